// Hostile programs against the code checker's sandbox: each attack must be contained, score 0
// with its reason, and leave the checker working (a correct program scores 1 right after).
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rewards/code/sandbox.h"
#include "tests/rewards/test_code_util.h"

namespace grpo::rewards {
namespace {

using test::make_code_checker;
using test::request;

const char* kAddTests = R"({"tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]})";

std::string unique_marker() {
  static std::mt19937_64 rng(std::random_device{}());
  return "grpo-sandbox-marker-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000000);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

// Host processes whose command line contains `marker`.
int count_processes_with(const std::string& marker) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return -1;
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmdline.find(marker) != std::string::npos) ++count;
  }
  ::closedir(proc);
  return count;
}

bool host_path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// The repository checkout, from this file's path (tests/rewards/test_code_sandbox.cpp).
std::string checkout_dir() {
  std::string here = __FILE__;
  return here.substr(0, here.rfind("/tests/rewards/"));
}

class SandboxAttack : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { checker_ = make_code_checker().release(); }
  static void TearDownTestSuite() {
    delete checker_;
    checker_ = nullptr;
  }
  void SetUp() override { GRPO_REQUIRE_SANDBOX(*checker_); }
  void TearDown() override {
    if (!checker_->sandbox_available()) return;
    ScoreResult ok = checker_->score(request("def add(a, b):\n    return a + b", kAddTests));
    EXPECT_EQ(ok.reward, 1.0) << "the checker no longer works after the attack: " << ok.reason;
  }
  // Scores `attack` against the add tests, expects reward 0 and `reason`, returns the result.
  static ScoreResult expect_contained(const std::string& attack, const std::string& reason, double* seconds = nullptr) {
    auto start = std::chrono::steady_clock::now();
    ScoreResult r = checker_->score(request(attack, kAddTests));
    if (seconds) *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.reward, 0.0);
    EXPECT_EQ(r.reason, reason) << (r.cases.empty() ? "" : r.cases[0].detail);
    return r;
  }
  static CodeChecker* checker_;
};
CodeChecker* SandboxAttack::checker_ = nullptr;

TEST_F(SandboxAttack, NetworkConnectionsFail) {
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string port = std::to_string(ntohs(addr.sin_port));

  std::string attack = R"(import socket
reached = []
for host in ['127.0.0.1', 'localhost', '::1', '1.1.1.1', '8.8.8.8']:
    try:
        socket.create_connection((host, PORT), timeout=0.5)
        reached.append(host)
    except OSError:
        pass
raise SystemExit('reached: %r' % reached))";
  ScoreResult r = expect_contained(replace_all(attack, "PORT", port), "runtime_error");
  EXPECT_NE(r.cases[0].detail.find("reached: []"), std::string::npos) << r.cases[0].detail;
  EXPECT_LT(::accept(listener, nullptr, nullptr), 0) << "the host listener got a connection";
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
  ::close(listener);
}

TEST_F(SandboxAttack, HostFilesAreInvisible) {
  const char* home = std::getenv("HOME");
  std::vector<std::string> paths = {"/etc/shadow", "/etc/passwd", checkout_dir() + "/README.md", __FILE__, "/root",
                                    "/work",       checkout_dir()};
  if (home && *home) paths.push_back(home);
  for (const std::string& path : paths) {
    std::string attack = "import os\np = " + std::string("'") + path + "'\n" +
                         "print(os.listdir(p) if os.path.isdir(p) else open(p).read()[:200])";
    ScoreResult r = expect_contained(attack, "runtime_error");
    EXPECT_NE(r.cases[0].detail.find("FileNotFoundError"), std::string::npos) << path << ": " << r.cases[0].detail;
  }
  // What the sandbox does see at its root: only what was bound.
  ScoreResult top = expect_contained("import os\nraise SystemExit(' '.join(sorted(os.listdir('/'))))", "runtime_error");
  EXPECT_NE(top.cases[0].detail.find("bin dev etc lib"), std::string::npos) << top.cases[0].detail;
  EXPECT_EQ(top.cases[0].detail.find("work"), std::string::npos) << top.cases[0].detail;
  EXPECT_EQ(top.cases[0].detail.find("root"), std::string::npos) << top.cases[0].detail;
}

TEST_F(SandboxAttack, WritesNeverReachTheHost) {
  std::string marker = unique_marker();
  std::vector<std::string> host_paths = {checkout_dir() + "/" + marker,
                                         "/tmp/" + marker,
                                         "/" + marker,
                                         "/usr/" + marker,
                                         "/root/" + marker,
                                         "/dev/" + marker};
  std::string attack = "wrote = []\nfor p in [";
  for (const std::string& p : host_paths) attack += "'" + p + "', ";
  attack += R"(]:
    try:
        with open(p, 'w') as f:
            f.write('pwned')
        wrote.append(p)
    except OSError:
        pass
raise SystemExit('wrote: %r' % wrote))";
  ScoreResult r = expect_contained(attack, "runtime_error");
  // Only the sandbox's own /tmp (a tmpfs that dies with it) is writable.
  EXPECT_NE(r.cases[0].detail.find("wrote: ['/tmp/" + marker + "']"), std::string::npos) << r.cases[0].detail;
  for (const std::string& p : host_paths) EXPECT_FALSE(host_path_exists(p)) << p << " appeared on the host";
}

TEST_F(SandboxAttack, ForkBombIsContained) {
  std::string marker = unique_marker();
  std::string attack = R"(import os, sys
if len(sys.argv) < 2:
    os.execv(sys.executable, [sys.executable, '-I', '-B', '/tmp/main.py', 'MARKER'])
while True:
    try:
        os.fork()
    except OSError:
        pass)";
  double seconds = 0;
  ScoreResult r = expect_contained(replace_all(attack, "MARKER", marker), "timeout", &seconds);
  EXPECT_LT(seconds, 2 * (2.0 + 1.5)) << "two cases of a 2 s limit on 2 parallel slots";
  EXPECT_EQ(count_processes_with(marker), 0) << "fork bomb processes survived the run";
}

TEST_F(SandboxAttack, ProcessLimitIsEnforced) {
  // Not an attack that fails: the program checks that the limit bites (max_processes 32).
  ScoreResult r = checker_->score(request(R"(import os, time
forked = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        forked += 1
except OSError:
    pass
def add(a, b):
    assert 0 < forked < 32, forked
    return a + b)",
                                          kAddTests));
  EXPECT_EQ(r.reward, 1.0) << (r.cases.empty() ? r.reason : r.cases[0].detail);
}

TEST_F(SandboxAttack, MemoryBombsHitTheLimit) {
  ScoreResult big = expect_contained("x = bytearray(8 << 30)", "memory");
  EXPECT_NE(big.cases[0].detail.find("MemoryError"), std::string::npos) << big.cases[0].detail;
  double seconds = 0;
  expect_contained("hog = []\nwhile True:\n    hog.append(bytearray(1 << 20))", "memory", &seconds);
  EXPECT_LT(seconds, 4.0);
}

TEST_F(SandboxAttack, InfiniteLoopsTimeOut) {
  double seconds = 0;
  ScoreResult spin = expect_contained("while True:\n    pass", "timeout", &seconds);
  EXPECT_EQ(spin.cases[0].verdict, "timeout");
  EXPECT_LT(seconds, 2.0 + 2.0);
  expect_contained("import time\ntime.sleep(3600)", "timeout", &seconds);
  EXPECT_LT(seconds, 2.0 + 2.0);
}

TEST_F(SandboxAttack, HugeOutputIsCappedQuickly) {
  double seconds = 0;
  ScoreResult out = expect_contained(
      "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\nsys.stdout.flush()",
      "output_limit", &seconds);
  EXPECT_EQ(out.cases[0].verdict, "output_limit");
  EXPECT_LT(seconds, 2.0) << "100 MB of output must be cut off at the cap, not read to the end";
  expect_contained("import sys\nchunk = 'e' * (1 << 20)\nfor _ in range(100):\n    sys.stderr.write(chunk)",
                   "output_limit", &seconds);
  EXPECT_LT(seconds, 2.0);
}

TEST_F(SandboxAttack, DaemonsDoNotOutliveTheRun) {
  std::string marker = unique_marker();
  std::string spawn = R"(import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)', 'MARKER'])
    os._exit(0)
time.sleep(0.3)
)";
  spawn = replace_all(spawn, "MARKER", marker);
  expect_contained(spawn, "runtime_error");  // no add(): NameError
  EXPECT_EQ(count_processes_with(marker), 0) << "a daemon outlived its sandbox";
  // Even when the answer is right, what it left behind is killed before the result arrives.
  ScoreResult ok = checker_->score(request(spawn + "def add(a, b):\n    return a + b\n", kAddTests));
  EXPECT_EQ(ok.reward, 1.0) << ok.reason;
  EXPECT_EQ(count_processes_with(marker), 0) << "a daemon outlived its sandbox";
}

TEST_F(SandboxAttack, HostProcessesCannotBeSignalled) {
  pid_t victim = ::fork();
  ASSERT_GE(victim, 0);
  if (victim == 0) {
    ::execl("/bin/sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string attack = R"(import os, signal
for target in [VICTIM, 1, -1, os.getppid()]:
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
raise SystemExit('still here'))";
  ScoreResult r = expect_contained(replace_all(attack, "VICTIM", std::to_string(victim)), "runtime_error");
  int status = 0;
  EXPECT_EQ(::waitpid(victim, &status, WNOHANG), 0) << "the host process was killed from inside the sandbox";
  ::kill(victim, SIGKILL);
  ::waitpid(victim, &status, 0);
}

TEST_F(SandboxAttack, IdentityAndDescriptorsAreMinimal) {
  // io style: the program prints what it sees; every probe must show the locked-down value.
  // uid gid hostname CapEff unshare(CLONE_NEWUSER) open-fds cwd, then the whole environment.
  const std::string expected =
      "65534 65534 sandbox 0000000000000000 -1 0 1 2 3 /tmp\\n"
      "HOME=/tmp LANG=C.UTF-8 PATH=/usr/bin:/bin PWD=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 "
      "PYTHONIOENCODING=utf-8";
  const std::string spec = R"({"cases": [{"input": "", "output": ")" + expected + R"("}]})";
  ScoreResult r = checker_->score(request(R"(import os, socket, ctypes
cap = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]
userns = ctypes.CDLL(None, use_errno=True).unshare(0x10000000)
fds = ' '.join(sorted(os.listdir('/proc/self/fd'), key=int))
print(os.getuid(), os.getgid(), socket.gethostname(), cap, userns, fds, os.getcwd())
print(*sorted('%s=%s' % kv for kv in os.environ.items())))",
                                          spec));
  EXPECT_EQ(r.reward, 1.0) << (r.cases.empty() ? r.reason : r.cases[0].detail);
}

TEST(SandboxRunner, DestructionKillsWhatRuns) {
  std::string marker = unique_marker();
  SandboxConfig config;
  config.limits.timeout_s = 30;
  auto sandbox = std::make_unique<Sandbox>(config);
  if (!sandbox->available()) {
    if (std::getenv("GRPO_TEST_ALLOW_NO_SANDBOX")) GTEST_SKIP() << sandbox->unavailable_reason();
    FAIL() << "sandbox unavailable: " << sandbox->unavailable_reason();
  }
  auto result = std::make_shared<std::promise<SandboxResult>>();
  SandboxJob job;
  job.program =
      "import os\nos.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)', '" + marker + "'])\n";
  sandbox->run_async(job, [result](SandboxResult r) { result->set_value(std::move(r)); });
  for (int i = 0; i < 200 && count_processes_with(marker) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(count_processes_with(marker), 1);
  auto start = std::chrono::steady_clock::now();
  sandbox.reset();  // must kill the program and wait for it
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 2.0);
  EXPECT_EQ(count_processes_with(marker), 0);
  SandboxResult r = result->get_future().get();
  EXPECT_NE(r.status, SandboxStatus::timeout);
  if (r.status == SandboxStatus::exited) {
    EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  }
}

}  // namespace
}  // namespace grpo::rewards
