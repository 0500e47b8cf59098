// Child processes (learner/train/process.h), with /bin/sh scripts and `grpo` as children:
// wait_for_line skips earlier lines, joins lines split across writes, and the log gets
// stdout and stderr; a child that exits first, one that stays silent past the timeout, one
// that ignores SIGTERM; exec of a missing or non-executable program; no orphan when the
// parent is SIGKILLed; own process group; signal mask and dispositions reset; stdin is
// /dev/null; extra environment; a chatty child never blocks on a full pipe;
// terminate_all_children; a child killed with -9; the destructor stops a running child.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "core/error.h"
#include "learner/train/process.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;
using train::ChildOptions;
using train::ChildProcess;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ChildOptions program(const std::string& name, std::vector<std::string> argv, const std::string& log_path = "",
                     std::vector<std::string> env = {}) {
  return ChildOptions{.name = name, .argv = std::move(argv), .log_path = log_path, .env = std::move(env)};
}

ChildOptions shell(const std::string& name, const std::string& script, const std::string& log_path = "") {
  return program(name, {"/bin/sh", "-c", script}, log_path);
}

// The message of the grpo::Error that `f` throws ("" and a test failure when it throws none).
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "expected a grpo::Error";
  return "";
}

// Fields of /proc/PID/stat after the command name: [0] = state, [19] = start time.
std::vector<std::string> proc_stat(pid_t pid) {
  const std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = text.rfind(')');
  std::vector<std::string> fields;
  if (close == std::string::npos) return fields;
  std::istringstream is(text.substr(close + 1));
  for (std::string f; is >> f;) fields.push_back(f);
  return fields;
}

// True once `pid` (started at `start_time`) no longer runs: gone, a zombie or dead, or the pid
// now belongs to another process.
bool process_gone(pid_t pid, const std::string& start_time) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  const std::vector<std::string> f = proc_stat(pid);
  if (f.size() < 20) return true;
  return f[0] == "Z" || f[0] == "X" || f[19] != start_time;
}

bool wait_gone(pid_t pid, const std::string& start_time, double timeout_s) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < timeout_s) {
    if (process_gone(pid, start_time)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return process_gone(pid, start_time);
}

// One "SigXxx:" mask of /proc/PID/status, as a number.
uint64_t signal_mask(pid_t pid, const std::string& field) {
  std::istringstream is(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(is, line);)
    if (line.starts_with(field + ":")) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  ADD_FAILURE() << "no " << field << " in /proc/" << pid << "/status";
  return ~uint64_t(0);
}

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("grpo_process_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string log(const std::string& name) const { return (dir_ / "logs" / name).string(); }

  fs::path dir_;
};

TEST_F(ChildProcessTest, WaitForLineSkipsEarlierLinesAndLogsEverything) {
  const std::string log_path = log("worker.log");
  {
    ChildProcess child(shell("rollout worker 0",
                             "echo first; echo second; echo 'listening on 127.0.0.1:4321'; echo after-the-line; "
                             "echo to-stderr >&2; exit 0",
                             log_path));
    EXPECT_EQ(child.name(), "rollout worker 0");
    EXPECT_GT(child.pid(), 0);
    EXPECT_EQ(child.wait_for_line("listening on ", 10), "listening on 127.0.0.1:4321");
    EXPECT_TRUE(child.wait(10));
    EXPECT_FALSE(child.running());
    EXPECT_EQ(child.describe_exit(), "exited with status 0");
    ASSERT_TRUE(WIFEXITED(child.exit_status()));
    EXPECT_EQ(WEXITSTATUS(child.exit_status()), 0);
    // The reader copies stdout into the log shortly after the child wrote it.
    const auto t0 = Clock::now();
    while (child.log_tail().find("after-the-line") == std::string::npos && seconds_since(t0) < 5)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_NE(child.log_tail().find("after-the-line\n"), std::string::npos) << child.log_tail();
    // Everything was consumed up to the matched line; the next line is still there.
    EXPECT_EQ(child.wait_for_line("after", 1), "after-the-line");
  }
  const std::string text = read_file(log_path);
  for (const char* line : {"first\n", "second\n", "listening on 127.0.0.1:4321\n", "after-the-line\n", "to-stderr\n"})
    EXPECT_NE(text.find(line), std::string::npos) << "log lacks " << line << ":\n" << text;
}

TEST_F(ChildProcessTest, LinesSplitAcrossWritesAndAFinalLineWithoutNewline) {
  ChildProcess child(shell("splitter", "printf 'listen'; sleep 0.2; printf 'ing on x\\n'; printf 'ready 1'"));
  EXPECT_EQ(child.wait_for_line("listening on ", 10), "listening on x");
  EXPECT_EQ(child.wait_for_line("ready", 10), "ready 1");
  EXPECT_EQ(child.log_tail(), "");  // no log file
}

TEST_F(ChildProcessTest, ExitBeforeTheLineNamesTheChildStatusAndStderr) {
  ChildProcess child(shell("reward service", "echo starting; echo 'config.json: unknown key foo' >&2; exit 3",
                           log("reward.log")));
  const auto t0 = Clock::now();
  const std::string msg = error_of([&] { child.wait_for_line("listening on ", 30); });
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_NE(msg.find("reward service"), std::string::npos) << msg;
  EXPECT_NE(msg.find("exited with status 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'listening on '"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json: unknown key foo"), std::string::npos) << msg;
  EXPECT_FALSE(child.running());
  EXPECT_EQ(WEXITSTATUS(child.exit_status()), 3);
}

TEST_F(ChildProcessTest, TimeoutLeavesTheChildRunningAndTerminateStopsIt) {
  ChildProcess child(shell("slow worker", "echo hello; sleep 60", log("slow.log")));
  const auto t0 = Clock::now();
  const std::string msg = error_of([&] { child.wait_for_line("never printed", 0.3); });
  const double waited = seconds_since(t0);
  EXPECT_GE(waited, 0.3);
  EXPECT_LT(waited, 3.0);
  EXPECT_NE(msg.find("slow worker"), std::string::npos) << msg;
  EXPECT_NE(msg.find("still running"), std::string::npos) << msg;
  EXPECT_TRUE(child.running());
  EXPECT_EQ(child.describe_exit(), "running");
  EXPECT_EQ(child.exit_status(), -1);

  const auto t1 = Clock::now();
  EXPECT_EQ(child.terminate(5), "killed by signal 15 (SIGTERM)");
  EXPECT_LT(seconds_since(t1), 3.0);
  EXPECT_FALSE(child.running());
  EXPECT_EQ(child.terminate(5), "killed by signal 15 (SIGTERM)");  // idempotent
  errno = 0;
  EXPECT_EQ(::waitpid(child.pid(), nullptr, WNOHANG), -1);  // reaped: no zombie left
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(ChildProcessTest, ChildIgnoringSigtermIsKilledAfterTheGrace) {
  ChildProcess child(shell("stubborn", "trap '' TERM; echo ready; while true; do sleep 0.05; done"));
  ASSERT_EQ(child.wait_for_line("ready", 10), "ready");
  const auto t0 = Clock::now();
  EXPECT_EQ(child.terminate(0.5), "killed by signal 9 (SIGKILL)");
  const double took = seconds_since(t0);
  EXPECT_GE(took, 0.5);
  EXPECT_LT(took, 5.0);
  EXPECT_FALSE(child.running());
}

TEST_F(ChildProcessTest, MissingOrNonExecutableProgramThrowsNamingIt) {
  const std::string missing = error_of([] {
    ChildProcess child(program("rollout worker 0", {"/nonexistent/grpo-no-such-program", "serve"}));
  });
  EXPECT_NE(missing.find("rollout worker 0"), std::string::npos) << missing;
  EXPECT_NE(missing.find("cannot execute /nonexistent/grpo-no-such-program"), std::string::npos) << missing;
  EXPECT_NE(missing.find("No such file or directory"), std::string::npos) << missing;

  const fs::path plain = dir_ / "not-executable";
  std::ofstream(plain) << "#!/bin/sh\necho hi\n";
  fs::permissions(plain, fs::perms::owner_read | fs::perms::owner_write);
  const std::string denied = error_of([&] { ChildProcess child(program("plain file", {plain.string()})); });
  EXPECT_NE(denied.find("cannot execute " + plain.string()), std::string::npos) << denied;
  EXPECT_NE(denied.find("Permission denied"), std::string::npos) << denied;

  EXPECT_NE(error_of([] { ChildProcess child(program("nothing", {})); }).find("nothing: no program to run"),
            std::string::npos);
  EXPECT_NE(error_of([] { ChildProcess child(program("bad env", {"/bin/true"}, "", {"NOEQUALS"})); })
                .find("environment entry 'NOEQUALS' is not KEY=VALUE"),
            std::string::npos);
}

TEST_F(ChildProcessTest, NoOrphanWhenTheParentIsKilled) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t helper = ::fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {  // the "trainer": starts a child, reports its pid, then waits to be killed
    ::close(p[0]);
    try {
      ChildProcess child(program("grandchild", {"/bin/sleep", "60"}));
      const pid_t pid = child.pid();
      if (::write(p[1], &pid, sizeof pid) != ssize_t(sizeof pid)) ::_exit(2);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(1);
    }
  }
  ::close(p[1]);
  pid_t grandchild = 0;
  const ssize_t got = ::read(p[0], &grandchild, sizeof grandchild);
  ::close(p[0]);
  if (got != ssize_t(sizeof grandchild)) {
    ::kill(helper, SIGKILL);
    ::waitpid(helper, nullptr, 0);
    FAIL() << "the helper process did not report its child's pid";
  }
  const std::vector<std::string> stat = proc_stat(grandchild);
  ASSERT_GE(stat.size(), 20u);
  ASSERT_TRUE(stat[0] != "Z" && stat[0] != "X") << "the grandchild should be running, state " << stat[0];
  const std::string start_time = stat[19];

  ASSERT_EQ(::kill(helper, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(helper, &status, 0), helper);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(wait_gone(grandchild, start_time, 5.0)) << "pid " << grandchild << " outlived its parent";
}

TEST_F(ChildProcessTest, ChildRunsInItsOwnProcessGroup) {
  ChildProcess child(program("grouped", {"/bin/sleep", "60"}));
  EXPECT_EQ(::getpgid(child.pid()), child.pid());
  EXPECT_NE(::getpgid(child.pid()), ::getpgrp());
}

TEST_F(ChildProcessTest, SignalMaskAndDispositionsAreNotInherited) {
  // A parent that blocks SIGTERM and ignores SIGINT and SIGPIPE.
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);
  struct sigaction ign {}, old_int{}, old_pipe{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ign, &old_int);
  ::sigaction(SIGPIPE, &ign, &old_pipe);
  std::unique_ptr<ChildProcess> child;
  try {
    child = std::make_unique<ChildProcess>(program("clean signals", {"/bin/sleep", "60"}));
  } catch (...) {
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ASSERT_TRUE(child);

  const uint64_t bit_term = uint64_t(1) << (SIGTERM - 1), bit_int = uint64_t(1) << (SIGINT - 1),
                 bit_pipe = uint64_t(1) << (SIGPIPE - 1);
  EXPECT_EQ(signal_mask(child->pid(), "SigBlk") & bit_term, 0u);
  EXPECT_EQ(signal_mask(child->pid(), "SigIgn") & (bit_int | bit_pipe), 0u);
  const auto t0 = Clock::now();
  EXPECT_EQ(child->terminate(10), "killed by signal 15 (SIGTERM)");
  EXPECT_LT(seconds_since(t0), 5.0);
}

TEST_F(ChildProcessTest, StdinIsDevNullAndExtraEnvironmentIsAdded) {
  ::setenv("GRPO_PROCESS_TEST_INHERITED", "kept", 1);
  ::setenv("GRPO_PROCESS_TEST_OVERRIDDEN", "old", 1);
  ChildOptions opts = shell("env child",
                            "if read x; then echo stdin=data; else echo stdin=eof; fi; "
                            "echo vars=$GRPO_PROCESS_TEST_INHERITED,$GRPO_PROCESS_TEST_OVERRIDDEN,$GRPO_PROCESS_TEST_NEW");
  opts.env = {"GRPO_PROCESS_TEST_OVERRIDDEN=new", "GRPO_PROCESS_TEST_NEW=x=y"};
  ChildProcess child(opts);
  ::unsetenv("GRPO_PROCESS_TEST_INHERITED");
  ::unsetenv("GRPO_PROCESS_TEST_OVERRIDDEN");
  EXPECT_EQ(child.wait_for_line("stdin=", 10), "stdin=eof");
  EXPECT_EQ(child.wait_for_line("vars=", 10), "vars=kept,new,x=y");
}

TEST_F(ChildProcessTest, ChattyChildNeverBlocksOnAFullPipe) {
  const std::string log_path = log("chatty.log");
  ChildProcess child(shell("chatty", "echo ready; head -c 3000000 /dev/zero | tr '\\000' x; echo; echo done-writing",
                           log_path));
  ASSERT_EQ(child.wait_for_line("ready", 10), "ready");
  // Nobody reads lines now: the reader thread keeps the pipe flowing into the log.
  ASSERT_TRUE(child.wait(30)) << "the child blocked writing its stdout";
  EXPECT_EQ(child.describe_exit(), "exited with status 0");
  EXPECT_EQ(child.wait_for_line("done-writing", 10), "done-writing");
  const auto t0 = Clock::now();
  while (fs::file_size(log_path) < 3000000 && seconds_since(t0) < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE(fs::file_size(log_path), 3000000u);
}

TEST_F(ChildProcessTest, TerminateAllChildrenStopsEveryChild) {
  ChildProcess a(program("a", {"/bin/sleep", "60"}));
  ChildProcess b(shell("b", "sleep 60"));
  ChildProcess c(shell("c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"));
  ASSERT_EQ(c.wait_for_line("ready", 10), "ready");
  const auto t0 = Clock::now();
  train::terminate_all_children(0.5);
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_FALSE(a.running());
  EXPECT_FALSE(b.running());
  EXPECT_FALSE(c.running());
  EXPECT_EQ(a.describe_exit(), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(b.describe_exit(), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ(c.describe_exit(), "killed by signal 9 (SIGKILL)");
  train::terminate_all_children(0.5);  // nothing left to do
}

TEST_F(ChildProcessTest, KilledChildDescribesTheSignal) {
  ChildProcess child(program("victim", {"/bin/sleep", "60"}));
  ASSERT_TRUE(child.running());
  ASSERT_EQ(::kill(child.pid(), SIGKILL), 0);
  EXPECT_TRUE(child.wait(5));
  EXPECT_FALSE(child.running());
  EXPECT_EQ(child.describe_exit(), "killed by signal 9 (SIGKILL)");
  ASSERT_TRUE(WIFSIGNALED(child.exit_status()));
  EXPECT_EQ(WTERMSIG(child.exit_status()), SIGKILL);
  child.send_signal(SIGTERM);  // reaped: ignored
  EXPECT_EQ(child.terminate(1), "killed by signal 9 (SIGKILL)");
  const std::string msg = error_of([&] { child.wait_for_line("anything", 5); });
  EXPECT_NE(msg.find("victim killed by signal 9 (SIGKILL) before printing 'anything'"), std::string::npos) << msg;
}

TEST_F(ChildProcessTest, DestructorStopsARunningChild) {
  pid_t pid = 0;
  std::string start_time;
  {
    ChildProcess child(program("scoped", {"/bin/sleep", "60"}));
    pid = child.pid();
    const std::vector<std::string> stat = proc_stat(pid);
    ASSERT_GE(stat.size(), 20u);
    start_time = stat[19];
  }
  EXPECT_TRUE(process_gone(pid, start_time));
}

TEST_F(ChildProcessTest, RunsTheGrpoBinary) {
  ASSERT_TRUE(fs::exists(GRPO_BINARY)) << GRPO_BINARY;
  ChildProcess child(program("grpo version", {GRPO_BINARY, "--version"}, log("grpo.log")));
  const std::string line = child.wait_for_line("grpo ", 30);  // "grpo 0.1.0 (cpu)"
  EXPECT_TRUE(line.size() > 5 && std::isdigit(static_cast<unsigned char>(line[5]))) << line;
  EXPECT_TRUE(child.wait(30));
  EXPECT_EQ(child.describe_exit(), "exited with status 0");
}

TEST_F(ChildProcessTest, SelfExecutableIsThisTestProgram) {
  const std::string exe = train::self_executable();
  EXPECT_TRUE(fs::path(exe).is_absolute()) << exe;
  EXPECT_EQ(fs::path(exe).filename(), "test_trainer");
  EXPECT_TRUE(fs::equivalent(exe, "/proc/self/exe"));
}

}  // namespace
}  // namespace grpo::test
