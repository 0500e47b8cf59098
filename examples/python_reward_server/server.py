#!/usr/bin/env python3
"""A reward checker written in Python, served over grpo.cpp's proto/reward.proto.

Any process that serves proto/reward.proto can score for `grpo train` / `grpo reward serve`:
name it in a reward config as a "remote" checker:

    {"checkers": {"py_exact": {"use": "remote", "address": "127.0.0.1:50071",
                               "checker": "exact_match"}}}

This server offers two checkers:
  exact_match  reward 1 when the completion's last non-empty line equals the reference
               (both stripped of surrounding whitespace), else 0.
  contains     reward 1 when the reference text occurs in the completion, else 0.

Usage:
    /usr/bin/python3 server.py [--listen 127.0.0.1:0] [--token-file FILE] [--proto DIR]

It compiles proto/reward.proto into a temporary folder at start-up (grpc_tools.protoc, from
Debian's python3-grpc-tools), then prints `listening on HOST:PORT` as its first line of
stdout. SIGINT / SIGTERM stop it, letting in-flight calls finish.
Needs Debian's python3-grpcio, python3-grpc-tools and python3-protobuf.
"""
import argparse
import concurrent.futures
import hmac
import os
import shutil
import signal
import sys
import tempfile
import threading


def load_stubs(proto_dir):
    """Generates reward_pb2 / reward_pb2_grpc into a temporary folder and imports them."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="grpo_reward_pb_")
    rc = protoc.main(["grpc_tools.protoc", "-I" + proto_dir, "--python_out=" + out,
                      "--grpc_python_out=" + out, os.path.join(proto_dir, "reward.proto")])
    if rc != 0:
        sys.exit("server.py: protoc failed on %s/reward.proto" % proto_dir)
    sys.path.insert(0, out)
    import reward_pb2  # noqa: E402  (generated above)
    import reward_pb2_grpc  # noqa: E402
    return reward_pb2, reward_pb2_grpc, out


def exact_match(completion, reference):
    lines = [line.strip() for line in completion.splitlines() if line.strip()]
    got = lines[-1] if lines else ""
    if not got:
        return 0.0, "no_answer", ""
    return (1.0, "correct", got) if got == reference.strip() else (0.0, "wrong", got)


def contains(completion, reference):
    if not reference:
        raise ValueError("the reference is empty")
    return (1.0, "found", reference) if reference in completion else (0.0, "not_found", "")


CHECKERS = {
    "exact_match": (exact_match, "last non-empty line equals the reference"),
    "contains": (contains, "the reference occurs in the completion"),
}


def make_servicer(pb, pb_grpc, token):
    import grpc

    class RewardService(pb_grpc.RewardServiceServicer):
        def _authorize(self, context):
            if not token:
                return
            sent = dict(context.invocation_metadata()).get("authorization", "")
            if not hmac.compare_digest(sent.encode(), ("Bearer " + token).encode()):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        def Score(self, request, context):
            self._authorize(context)
            response = pb.ScoreResponse()
            for index, item in enumerate(request.items):
                name = item.checker or "exact_match"
                if name not in CHECKERS:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "item %d (id %d): unknown checker \"%s\" (known: %s)"
                                  % (index, item.id, name, ", ".join(sorted(CHECKERS))))
                try:
                    reward, reason, extracted = CHECKERS[name][0](item.completion, item.reference)
                except ValueError as e:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "item %d (id %d): %s" % (index, item.id, e))
                result = response.results.add(id=item.id, reward=reward, reason=reason,
                                              extracted=extracted)
                result.components.add(name=name, value=reward, weight=1.0, reason=reason)
            return response

        def ListCheckers(self, request, context):
            self._authorize(context)
            response = pb.ListCheckersResponse(default_checker="exact_match")
            for name in sorted(CHECKERS):
                response.checkers.add(name=name, kind="checker", description=CHECKERS[name][1])
            return response

    return RewardService()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50071",
                        help="HOST:PORT to serve on (port 0 picks a free one)")
    parser.add_argument("--token-file", help="require 'authorization: Bearer <token in FILE>'")
    parser.add_argument("--proto", default=os.path.join(here, "..", "..", "proto"),
                        help="folder holding reward.proto")
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    args = parser.parse_args()

    try:
        import grpc
    except ImportError:
        sys.exit("server.py: python3-grpcio is not installed (apt-get install python3-grpcio python3-grpc-tools)")
    pb, pb_grpc, stub_dir = load_stubs(os.path.abspath(args.proto))
    token = ""
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=args.threads))
    pb_grpc.add_RewardServiceServicer_to_server(make_servicer(pb, pb_grpc, token), server)
    host = args.listen.rsplit(":", 1)[0]
    port = server.add_insecure_port(args.listen)
    if port == 0:
        sys.exit("server.py: cannot listen on %s" % args.listen)
    server.start()
    print("listening on %s:%d" % (host, port), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()  # in-flight calls get 2 s to finish
    shutil.rmtree(stub_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
