// The reward service tests' child-process and HTTP helpers (tests/rewards/service/
// test_helpers.h), compiled into this binary too: the rollout service tests need the same
// ChildProcess, http_get and unused_port.
#include "tests/rewards/service/test_helpers.cpp"
