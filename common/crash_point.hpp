#pragma once
// Test-only crash points. When the environment variable DRD_TEST_CRASH_AT
// names `point` (a comma-separated list may name several), the process
// SIGKILLs itself right there — exactly what `kill -9` at that instant would
// do, but at a chosen step instead of a lucky moment. The end-to-end tests use
// it to check that a drd killed in the middle of a failover converges after a
// restart. Unset (always, in production) it costs one cached getenv.
//
// Points (docs/reliability.md): failover_claimed (the new term and pending
// failover are stored, nothing done yet), promoted (PostgreSQL: pg_promote
// returned, standbys not repointed, history not written).
namespace drd {

void crash_point(const char* point);

}  // namespace drd
