// `grpo train` end to end with real child processes, on a tiny random model (so rewards are
// mostly 0; these tests are about the machinery, the quickstart is about learning):
//  - each topology (local, remote, colocated) runs 5 steps and writes metrics.jsonl with every
//    documented key, samples.jsonl, TensorBoard scalars that read back, a complete checkpoint;
//  - --resume continues from the last checkpoint and the metrics hold each step once;
//  - a rollout worker SIGKILLed mid-run: the run completes (the worker is restarted);
//  - the reward service SIGKILLed mid-run: exit 1, a one-line error naming the reward service,
//    and a checkpoint of the last good step;
//  - no child process outlives the run after a normal exit, an error exit, SIGINT and SIGKILL.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "learner/checkpoint.h"
#include "learner/train/process.h"
#include "learner/train/tensorboard.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using train::ChildOptions;
using train::ChildProcess;
using Clock = std::chrono::steady_clock;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Json> read_jsonl(const fs::path& p) {
  std::vector<Json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

// A tiny random qwen3 with the byte-level tokenizer, made once per test binary.
const std::string& tiny_model() {
  static const std::string dir = [] {
    const fs::path d = fs::temp_directory_path() / ("grpo_train_model_" + std::to_string(getpid()));
    fs::remove_all(d);
    const std::string cmd = std::string(GRPO_BINARY) + " model init --arch qwen3 --preset tiny --seed 3 --out " +
                            d.string() + " > /dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d.string();
  }();
  return dir;
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("grpo_train_" + std::to_string(getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A config for `steps` steps of 4 prompts x 4 samples of at most 12 tokens.
  Json config(const std::string& kind, int steps) const {
    Json c = {
        {"model", tiny_model()},
        {"data", {{"name", "arithmetic"}, {"seed", 1}, {"count", 200}, {"min_level", 1}, {"max_level", 1}}},
        {"prompt", {{"format", "raw"}, {"template", "{prompt}\n"}}},
        {"rollout", {{"prompts_per_step", 4}, {"group_size", 4}, {"max_new_tokens", 12}, {"stop", {"</answer>"}}}},
        {"reward", {{"checker", "arithmetic"}, {"retries", 1}, {"backoff_s", 0.2}, {"timeout_s", 20}}},
        {"optimizer", {{"lr", 1e-3}}},
        {"learner", {{"micro_batch_tokens", 1024}}},
        {"topology", {{"kind", kind}, {"workers", 2}, {"worker_kv_memory", "8M"}, {"worker_max_batch", 16},
                      {"worker_threads", 1}, {"start_timeout_s", 60}, {"generate_timeout_s", 60}}},
        {"steps", steps},
        {"seed", 5},
        {"run_dir", run_dir().string()},
        {"save_every", 2},
        {"keep_last", 0},
        {"samples_per_step", 2},
        {"threads", 1},
    };
    return c;
  }
  fs::path run_dir() const { return dir_ / "run"; }
  fs::path write_config(const Json& c, const std::string& name = "config.json") const {
    const fs::path p = dir_ / name;
    std::ofstream(p) << c.dump(2);
    return p;
  }

  // `grpo train ARGS...` as a child; stdout and stderr in dir_/train.log.
  std::unique_ptr<ChildProcess> start_train(const std::vector<std::string>& args) const {
    ChildOptions o;
    o.name = "grpo train";
    o.argv = {GRPO_BINARY, "train"};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.log_path = (dir_ / "train.log").string();
    o.env = {"OMP_NUM_THREADS=1"};
    return std::make_unique<ChildProcess>(o);
  }
  // Runs to the end (at most timeout_s); returns the exit code (-signal when killed).
  int run_train(const std::vector<std::string>& args, double timeout_s = 240) const {
    auto c = start_train(args);
    if (!c->wait(timeout_s)) {
      ADD_FAILURE() << "grpo train did not finish in " << timeout_s << " s; log:\n" << log();
      c->terminate(1);
    }
    const int st = c->exit_status();
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }
  std::string log() const { return read_file(dir_ / "train.log"); }

  fs::path dir_;
};

// Processes whose parent is `pid`, with their command lines.
std::map<pid_t, std::string> children_of(pid_t pid) {
  std::map<pid_t, std::string> out;
  for (const fs::directory_entry& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_file(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid != pid || state == 'Z') continue;
    std::string cmd = read_file(e.path() / "cmdline");
    for (char& ch : cmd)
      if (ch == '\0') ch = ' ';
    out[pid_t(std::stoi(name))] = cmd;
  }
  return out;
}

// True when `pid` is gone (or a zombie) within timeout_s.
bool gone(pid_t pid, double timeout_s = 10) {
  const Clock::time_point t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < timeout_s) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    if (stat.empty()) return true;
    const size_t close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Waits until metrics.jsonl has a line for `step` (or the child exits).
bool wait_for_step(const fs::path& run, int64_t step, ChildProcess& child, double timeout_s = 120) {
  const Clock::time_point t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < timeout_s) {
    for (const Json& j : read_jsonl(run / "metrics.jsonl"))
      if (j.value("step", int64_t(-1)) >= step && j.contains("reward/mean")) return true;
    if (!child.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Every child of the trainer, collected while it runs (they are started before step 1).
std::map<pid_t, std::string> wait_for_children(pid_t trainer, size_t count, double timeout_s = 60) {
  const Clock::time_point t0 = Clock::now();
  std::map<pid_t, std::string> kids;
  while (std::chrono::duration<double>(Clock::now() - t0).count() < timeout_s) {
    kids = children_of(trainer);
    size_t serving = 0;
    for (const auto& [p, cmd] : kids) serving += cmd.find(" serve ") != std::string::npos;
    if (serving >= count) return kids;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return kids;
}

pid_t child_running(const std::map<pid_t, std::string>& kids, const std::string& what) {
  for (const auto& [p, cmd] : kids)
    if (cmd.find(what) != std::string::npos) return p;
  return -1;
}

const std::vector<std::string> kStepKeys = {
    "step", "reward/mean", "reward/std", "reward/arithmetic", "accuracy", "format_rate", "response_length/mean",
    "response_length/max", "response_length/truncation_rate", "loss", "kl", "entropy", "clip_frac", "grad_norm", "lr",
    "groups/zero_variance", "dynamic_sampling/rounds", "dynamic_sampling/dropped_groups", "tokens/generated",
    "time/generate_s", "time/reward_s", "time/learn_s", "time/weight_sync_s", "time/step_s", "tokens_per_s/generate",
    "tokens_per_s/learn", "tokens_per_s/step", "workers/retried_groups", "elapsed_s"};

// What every finished 5-step run must have left in its run directory.
void expect_finished_run(const fs::path& run, int64_t steps) {
  const std::vector<Json> lines = read_jsonl(run / "metrics.jsonl");
  std::vector<int64_t> seen;
  for (const Json& j : lines)
    if (j.contains("reward/mean")) {
      seen.push_back(j["step"].get<int64_t>());
      for (const std::string& k : kStepKeys) EXPECT_TRUE(j.contains(k)) << "metrics line lacks " << k << ": " << j.dump();
      EXPECT_GE(j["tokens/generated"].get<int64_t>(), 1);
      EXPECT_EQ(j["version"].get<int64_t>(), j["step"].get<int64_t>());
    }
  std::vector<int64_t> want;
  for (int64_t s = 1; s <= steps; ++s) want.push_back(s);
  EXPECT_EQ(seen, want);

  const std::vector<Json> samples = read_jsonl(run / "samples.jsonl");
  EXPECT_EQ(samples.size(), size_t(2 * steps));
  for (const Json& s : samples)
    for (const char* k : {"step", "prompt", "completion", "reward", "components", "finish", "tokens"})
      EXPECT_TRUE(s.contains(k)) << k;

  const CheckpointScan scan = find_latest_checkpoint(run.string());
  EXPECT_EQ(scan.step, steps);
  EXPECT_EQ(verify_checkpoint(scan.path), "");
  EXPECT_TRUE(fs::exists(fs::path(scan.path) / "tokenizer.json"));

  // TensorBoard: every step's reward/mean, read back with CRCs checked.
  std::set<int64_t> tb_steps;
  int files = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(run / "tb")) {
    ++files;
    const train::EventFileContents ev = train::read_event_file(e.path().string());
    EXPECT_EQ(ev.file_version, "brain.Event:2");
    for (const train::ScalarEvent& s : ev.scalars)
      if (s.tag == "reward/mean") tb_steps.insert(s.step);
  }
  EXPECT_GE(files, 1);
  EXPECT_EQ(tb_steps.size(), size_t(steps));
  const Json cfg = Json::parse(read_file(run / "config.json"));
  EXPECT_EQ(cfg["steps"].get<int64_t>(), steps);
}

TEST_F(TrainTest, LocalTopologyRunsAndResumes) {
  // 3 steps, then --resume to 5 with the effective config saved in the run directory.
  const fs::path cfg = write_config(config("local", 3));
  auto child = start_train({cfg.string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  ASSERT_TRUE(child->wait(240)) << log();
  ASSERT_EQ(child->exit_status(), 0) << log();
  EXPECT_EQ(kids.size(), 3u) << "expected 2 rollout workers and a reward service";
  // The workers build their models with the run's dtype (auto by default).
  for (const auto& [pid, cmd] : kids)
    if (cmd.find("rollout serve") != std::string::npos) EXPECT_NE(cmd.find(" --dtype auto "), std::string::npos) << cmd;
  for (const auto& [pid, cmd] : kids) EXPECT_TRUE(gone(pid)) << "left running after a normal exit: " << cmd;
  EXPECT_EQ(find_latest_checkpoint(run_dir().string()).step, 3);
  EXPECT_NE(log().find("grpo train: steps 0..3 of 3"), std::string::npos) << log();

  ASSERT_EQ(run_train({"--resume", run_dir().string(), "--set", "steps=5"}), 0) << log();
  EXPECT_NE(log().find("resumed from"), std::string::npos) << log();
  expect_finished_run(run_dir(), 5);
  // The workers logged to the run's logs/ folder.
  EXPECT_TRUE(fs::exists(run_dir() / "logs" / "rollout-0.log"));
  EXPECT_TRUE(fs::exists(run_dir() / "logs" / "reward.log"));
}

TEST_F(TrainTest, ColocatedTopologyRuns) {
  Json c = config("colocated", 5);
  c["dtype"] = "f32";  // what auto gives on the CPU, named
  ASSERT_EQ(run_train({write_config(c).string()}), 0) << log();
  expect_finished_run(run_dir(), 5);
  EXPECT_FALSE(fs::exists(run_dir() / "logs" / "rollout-0.log"));
  EXPECT_EQ(Json::parse(read_file(run_dir() / "config.json"))["dtype"], "f32");
  EXPECT_NE(log().find("(f32), 5 steps from step 0"), std::string::npos) << log();
}

TEST_F(TrainTest, Bf16OnTheCpuIsOneLineBeforeAnythingStarts) {
  // The CPU backend computes in f32 only: dtype bf16 there fails at start, before any child
  // process or run directory, in one line naming the dtype and the device.
  for (const char* kind : {"local", "colocated"}) {
    SCOPED_TRACE(kind);
    Json c = config(kind, 1);
    c["device"] = "cpu";
    c["dtype"] = "bf16";
    fs::remove(dir_ / "train.log");
    EXPECT_EQ(run_train({write_config(c).string()}), 1);
    const std::string text = log();
    EXPECT_EQ(text.rfind("grpo: error: dtype bf16: the cpu backend computes in f32 only", 0), 0u) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    EXPECT_FALSE(fs::exists(run_dir())) << text;
  }
  // A dtype that is no dtype is a config error naming the key and the accepted values.
  Json c = config("colocated", 1);
  c["dtype"] = "fp16";
  fs::remove(dir_ / "train.log");
  EXPECT_EQ(run_train({write_config(c).string()}), 1);
  EXPECT_NE(log().find("\"dtype\" is \"fp16\", expected one of auto, f32, bf16"), std::string::npos) << log();
}

TEST_F(TrainTest, RemoteTopologyRuns) {
  // The services as the user would run them, then the trainer pointed at their addresses.
  std::vector<std::unique_ptr<ChildProcess>> services;
  std::vector<std::string> rollout;
  for (int i = 0; i < 2; ++i) {
    services.push_back(std::make_unique<ChildProcess>(ChildOptions{
        .name = "worker", .argv = {GRPO_BINARY, "rollout", "serve", "--model", tiny_model(), "--listen", "127.0.0.1:0",
                                   "--kv-memory", "8M"},
        .log_path = (dir_ / ("worker" + std::to_string(i) + ".log")).string(), .env = {"OMP_NUM_THREADS=1"}}));
    rollout.push_back(services.back()->wait_for_line("listening on ", 60).substr(13));
  }
  services.push_back(std::make_unique<ChildProcess>(
      ChildOptions{.name = "reward", .argv = {GRPO_BINARY, "reward", "serve", "--listen", "127.0.0.1:0"},
                   .log_path = (dir_ / "reward.log").string(), .env = {}}));
  const std::string reward = services.back()->wait_for_line("listening on ", 60).substr(13);
  Json c = config("remote", 5);
  c["topology"] = {{"kind", "remote"}, {"rollout_addresses", rollout}, {"reward_address", reward}};
  ASSERT_EQ(run_train({write_config(c).string()}), 0) << log();
  expect_finished_run(run_dir(), 5);
  // The services were the user's: still serving.
  for (auto& s : services) EXPECT_TRUE(s->running());
}

TEST_F(TrainTest, KilledWorkerIsReplacedAndTheRunCompletes) {
  const fs::path cfg = write_config(config("local", 40));  // long enough to be killed in the middle
  auto child = start_train({cfg.string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  const pid_t worker = child_running(kids, "rollout serve");
  ASSERT_GT(worker, 0);
  ASSERT_TRUE(wait_for_step(run_dir(), 2, *child)) << log();
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  ASSERT_TRUE(child->wait(240)) << log();
  ASSERT_EQ(child->exit_status(), 0) << log();
  const std::vector<Json> lines = read_jsonl(run_dir() / "metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["step"].get<int64_t>(), 40);
  EXPECT_GE(lines.back()["workers/restarts"].get<int64_t>(), 1) << log();
  EXPECT_NE(log().find("rollout worker"), std::string::npos);
  EXPECT_EQ(find_latest_checkpoint(run_dir().string()).step, 40);
  for (const auto& [pid, cmd] : children_of(child->pid())) ADD_FAILURE() << "still a child: " << cmd;
}

TEST_F(TrainTest, HungWorkerTimesOutAndIsReplaced) {
  // SIGSTOP: the worker's process lives on but answers nothing. Whichever call reaches it first
  // times out (a Generate call: its groups go to the other worker; a weight update: it would
  // serve stale weights), and it is stopped and restarted with the current weights.
  Json c = config("local", 30);
  c["topology"]["generate_timeout_s"] = 2;
  auto child = start_train({write_config(c).string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  const pid_t worker = child_running(kids, "rollout serve");
  ASSERT_GT(worker, 0);
  ASSERT_TRUE(wait_for_step(run_dir(), 2, *child)) << log();
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  ASSERT_TRUE(child->wait(240)) << log();
  ASSERT_EQ(child->exit_status(), 0) << log();
  const std::vector<Json> lines = read_jsonl(run_dir() / "metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["step"].get<int64_t>(), 30);
  EXPECT_GE(lines.back()["workers/restarts"].get<int64_t>(), 1) << log();
  EXPECT_TRUE(gone(worker)) << "the hung worker was left behind";
}

TEST_F(TrainTest, KilledRewardServiceStopsTheRunWithACheckpoint) {
  Json c = config("local", 50);
  c["save_every"] = 0;  // the checkpoint must come from the failure path
  auto child = start_train({write_config(c).string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  const pid_t reward = child_running(kids, "reward serve");
  ASSERT_GT(reward, 0);
  ASSERT_TRUE(wait_for_step(run_dir(), 2, *child)) << log();
  ASSERT_EQ(kill(reward, SIGKILL), 0);
  ASSERT_TRUE(child->wait(120)) << log();
  const int st = child->exit_status();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 1) << log();
  const std::string text = log();
  EXPECT_NE(text.find("grpo: error: train stopped in step"), std::string::npos) << text;
  EXPECT_NE(text.find("reward service"), std::string::npos) << text;
  EXPECT_NE(text.find("checkpoint of step"), std::string::npos) << text;
  // The checkpoint is of the last step whose metrics were written: the last good one.
  int64_t last = 0;
  for (const Json& j : read_jsonl(run_dir() / "metrics.jsonl")) last = std::max(last, j["step"].get<int64_t>());
  const CheckpointScan scan = find_latest_checkpoint(run_dir().string());
  EXPECT_GE(last, 2);
  EXPECT_EQ(scan.step, last);
  for (const auto& [pid, cmd] : kids) EXPECT_TRUE(gone(pid)) << "left running after an error exit: " << cmd;
}

TEST_F(TrainTest, SigintStopsCleanlyWithAFinalCheckpoint) {
  Json c = config("local", 200);
  c["save_every"] = 0;
  auto child = start_train({write_config(c).string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  ASSERT_TRUE(wait_for_step(run_dir(), 1, *child)) << log();
  child->send_signal(SIGINT);
  ASSERT_TRUE(child->wait(60)) << log();
  const int st = child->exit_status();
  ASSERT_TRUE(WIFEXITED(st)) << log();
  EXPECT_EQ(WEXITSTATUS(st), 130) << log();
  EXPECT_NE(log().find("interrupted"), std::string::npos) << log();
  const CheckpointScan scan = find_latest_checkpoint(run_dir().string());
  EXPECT_GE(scan.step, 1) << log();
  EXPECT_EQ(verify_checkpoint(scan.path), "");
  EXPECT_EQ(kids.size(), 3u);
  for (const auto& [pid, cmd] : kids) EXPECT_TRUE(gone(pid)) << "left running after SIGINT: " << cmd;
}

TEST_F(TrainTest, SigkillOfTheTrainerTakesTheChildrenDown) {
  auto child = start_train({write_config(config("local", 200)).string()});
  const std::map<pid_t, std::string> kids = wait_for_children(child->pid(), 3);
  ASSERT_EQ(kids.size(), 3u) << log();
  child->send_signal(SIGKILL);
  ASSERT_TRUE(child->wait(10));
  for (const auto& [pid, cmd] : kids) EXPECT_TRUE(gone(pid)) << "orphaned by SIGKILL: " << cmd;
}

TEST_F(TrainTest, DynamicSamplingDropsZeroVarianceGroupsAndDrawsMore) {
  // A reward with variance on a random model: 1 when the completion holds a digit.
  const fs::path data = dir_ / "prompts.jsonl";
  {
    std::ofstream out(data);
    for (int i = 0; i < 40; ++i) out << Json{{"prompt", "say " + std::to_string(i)}, {"reference", ""}}.dump() << "\n";
  }
  const fs::path rewards = dir_ / "rewards.json";
  std::ofstream(rewards) << R"({"checkers": {"digit": {"use": "format", "pattern": "[0-9]", "full_match": false}}})";
  Json c = config("colocated", 4);
  c["data"] = {{"path", data.string()}};
  c["reward"] = {{"checker", "digit"}, {"config", rewards.string()}};
  c["dynamic_sampling"] = {{"enabled", true}, {"max_rounds", 3}};
  ASSERT_EQ(run_train({write_config(c).string()}), 0) << log();
  int64_t dropped_total = 0, rounds_total = 0;
  for (const Json& j : read_jsonl(run_dir() / "metrics.jsonl")) {
    const int64_t rounds = j["dynamic_sampling/rounds"], dropped = j["dynamic_sampling/dropped_groups"];
    const int64_t total = j["groups/total"], zero = j["groups/zero_variance"], trained = j["groups/trained"];
    EXPECT_EQ(dropped, zero) << j.dump();                      // every zero-variance group is dropped
    EXPECT_GE(total, 4) << j.dump();
    EXPECT_LE(total, 4 * rounds) << j.dump();                   // each round asks for what is missing
    EXPECT_EQ(trained, std::min<int64_t>(total - zero, 4)) << j.dump();  // the batch is cut to 4 groups
    EXPECT_TRUE(trained == 4 || rounds == 3) << j.dump();      // more prompts until full or out of rounds
    if (rounds > 1) EXPECT_GT(dropped, 0) << j.dump();         // another round only after a drop
    EXPECT_TRUE(j.contains("reward/format"));
    dropped_total += dropped;
    rounds_total += rounds;
  }
  // P(all 4 samples agree) is about 0.2 here: over 4 steps some group is dropped.
  EXPECT_GT(dropped_total, 0);
  EXPECT_GT(rounds_total, 4);
}

TEST_F(TrainTest, ConfigErrorsAreOneLine) {
  Json c = config("local", 5);
  c["rollout"]["group_siz"] = 4;
  EXPECT_EQ(run_train({write_config(c).string()}), 1);
  EXPECT_NE(log().find("rollout.group_siz"), std::string::npos) << log();
  Json r = config("remote", 5);
  EXPECT_EQ(run_train({write_config(r).string()}), 1);
  EXPECT_NE(log().find("topology.rollout_addresses"), std::string::npos) << log();
  // Held-out for real: training prompts that are eval prompts are dropped; all of them is an error.
  Json same = config("colocated", 1);
  same["eval"] = {{"data", same["data"]}};
  EXPECT_EQ(run_train({write_config(same).string()}), 1);
  EXPECT_NE(log().find("every training problem is also in eval.data"), std::string::npos) << log();
  same["eval"]["exclude_from_training"] = false;
  same["eval"]["n"] = 1;
  same["run_dir"] = (dir_ / "run_same").string();
  EXPECT_EQ(run_train({write_config(same).string()}), 0) << log();
  Json part = config("colocated", 1);
  part["eval"] = {{"data", {{"name", "arithmetic"}, {"seed", 1}, {"count", 20}, {"min_level", 1}, {"max_level", 1}}}};
  part["run_dir"] = (dir_ / "run_part").string();
  EXPECT_EQ(run_train({write_config(part).string()}), 0) << log();
  EXPECT_NE(log().find("training problems left out: their prompt is in eval.data"), std::string::npos) << log();
  // A run directory with a checkpoint is not started over.
  ASSERT_EQ(run_train({write_config(config("colocated", 2)).string()}), 0) << log();
  EXPECT_EQ(run_train({write_config(config("colocated", 2)).string()}), 1);
  EXPECT_NE(log().find("already has a checkpoint"), std::string::npos) << log();
}

}  // namespace
}  // namespace grpo::test
