#!/usr/bin/env python3
"""Reads a TensorBoard event file with TensorBoard's own readers and prints it as JSON.

    python3 read_tensorboard.py EVENT_FILE

prints one JSON object:

    {"file_version": "brain.Event:2",
     "scalars": [{"tag": ..., "step": ..., "value": ..., "wall_time": ...}, ...],
     "accumulator": {"TAG": [{"step": ..., "value": ..., "wall_time": ...}, ...], ...} or null}

"scalars" come from tensorboard's event file loader (its TFRecord reader checks both CRCs of
every record; a record that fails them ends the stream there, so it shows up as missing
scalars). "accumulator" is what TensorBoard's EventAccumulator, run on the file's folder,
reports as scalar tags; null when this tensorboard has no such module. Non-finite values are
written as the strings "nan", "inf", "-inf" (JSON has no literals for them).

Used by tests/trainer/test_tensorboard.cpp. Exit code 77 (the test skips) with a message on
stderr when tensorboard cannot be imported: `pip install tensorboard`.
"""
import json
import math
import os
import sys


def number(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def scalar_of(value):
    """The float of a summary value: simple_value, or a one-element float tensor."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return value.simple_value
    if kind == "tensor" and len(value.tensor.float_val) == 1:
        return value.tensor.float_val[0]
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: read_tensorboard.py EVENT_FILE", file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        from tensorboard.backend.event_processing import event_file_loader
    except ImportError as e:
        print("tensorboard is not installed for %s (pip install tensorboard): %s" % (sys.executable, e),
              file=sys.stderr)
        return 77
    if not os.path.isfile(path):
        print("%s: no such file" % path, file=sys.stderr)
        return 1

    # The legacy loader yields the Events as written; the newer one migrates simple_value
    # scalars to tensors, which scalar_of() reads too.
    loader_class = getattr(event_file_loader, "LegacyEventFileLoader", None) or event_file_loader.EventFileLoader
    out = {"file_version": None, "scalars": [], "accumulator": None}
    for i, event in enumerate(loader_class(path).Load()):
        if event.WhichOneof("what") == "file_version":
            if i == 0:
                out["file_version"] = event.file_version
            continue
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            v = scalar_of(value)
            if v is None:
                print("%s: event %d: tag %r is not a scalar" % (path, i, value.tag), file=sys.stderr)
                return 1
            out["scalars"].append({"tag": value.tag, "step": event.step, "value": number(v),
                                   "wall_time": event.wall_time})

    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        event_accumulator = None
    if event_accumulator is not None:
        acc = event_accumulator.EventAccumulator(os.path.dirname(os.path.abspath(path)),
                                                 size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        out["accumulator"] = {
            tag: [{"step": s.step, "value": number(s.value), "wall_time": s.wall_time} for s in acc.Scalars(tag)]
            for tag in acc.Tags()[event_accumulator.SCALARS]
        }

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
