// TensorBoard event files written without TensorFlow: `tensorboard --logdir RUN_DIR/tb` shows
// the scalars of a `grpo train` run.
//
//   TensorBoardWriter tb(run_dir + "/tb");        // creates the folder and the event file
//   tb.add_scalar("reward/mean", 0.42, /*step=*/7, /*wall_time=*/unix_seconds);
//   tb.flush();
//
// File: RUN_DIR/tb/events.out.tfevents.<unix seconds>.<hostname>.<pid>.grpo (the prefix
// "events.out.tfevents." is what TensorBoard looks for); a name already taken (the same
// process opening a second writer in the same folder in the same second) gets ".1", ".2", ...
// appended, which sorts after it (TensorBoard orders a folder's files by name). It is a
// TFRecord stream of serialized `Event` messages (proto/tensorboard.proto, TensorBoard's own
// field numbers). Each record:
//   uint64 length (little-endian)
//   uint32 masked_crc32c(the 8 length bytes)
//   length bytes of data (one serialized Event)
//   uint32 masked_crc32c(data)
// masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32), c = CRC-32C (Castagnoli,
// reflected polynomial 0x82F63B78) of x. The first record is an Event with wall_time and
// file_version "brain.Event:2"; then one Event per add_scalar (step, wall_time, summary with one
// value: tag + simple_value).
//
// Resuming a run opens a new file beside the old ones (a new name: time and pid differ);
// TensorBoard merges the files of a folder, later steps win where they overlap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpo::train {

// CRC-32C of `size` bytes (continuing from `crc`, 0 to start).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates `dir` (and parents) and a new event file in it; writes the file_version record.
  // Throws grpo::Error naming the path when it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();  // flushes
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One scalar (stored as float, TensorBoard's simple_value; finite values beyond float range
  // become +-inf). Non-finite values are written as they are (TensorBoard shows NaN/inf).
  // Buffered: on disk after flush() or the destructor. The tag must be non-empty UTF-8
  // (grpo::Error otherwise). One thread at a time.
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  // Writes buffered records to the file (and the OS); throws grpo::Error on a write failure.
  void flush();
  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One record read back: the data bytes, and whether both CRCs matched.
struct TfRecord {
  std::string data;
  bool length_crc_ok = false, data_crc_ok = false;
};
// Reads every record of a TFRecord file. Throws grpo::Error naming the file and byte offset
// on a truncated record (a torn last record included).
std::vector<TfRecord> read_tfrecords(const std::string& path);

// The scalars of an event file, decoded with proto/tensorboard.proto.
struct ScalarEvent {
  std::string tag;
  double value = 0;  // the float as written
  int64_t step = 0;
  double wall_time = 0;
};
struct EventFileContents {
  std::string file_version;  // from the first record
  std::vector<ScalarEvent> scalars;
};
// Throws grpo::Error on a bad CRC or an undecodable record.
EventFileContents read_event_file(const std::string& path);

}  // namespace grpo::train
