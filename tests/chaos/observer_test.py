"""The PostgreSQL observer's split-brain rule, on recorded answers (no servers needed)."""
import os, sys, unittest

sys.path.insert(0, os.path.dirname(__file__))
from pg_chaos import PgObserver  # noqa: E402

runs_of = PgObserver.writable_runs
splits = PgObserver.split_instants_of


class WritableRuns(unittest.TestCase):
    def test_runs_span_first_question_to_last_answer(self):
        answers = [(0, 2, True), (20, 22, True), (40, 41, False), (60, 63, True)]
        self.assertEqual(runs_of(answers), [(0, 22), (60, 63)])

    def test_no_writable_answer_no_run(self):
        self.assertEqual(runs_of([]), [])
        self.assertEqual(runs_of([(0, 1, False), (20, 21, False)]), [])


class SplitBrain(unittest.TestCase):
    def test_crash_failover_faster_than_sampling_is_not_a_split(self):
        # node0 answered writable until 10 ms, then died; node1 writable from 80 ms on. The
        # old "two fresh answers within 100 ms" rule counted instants near 80 ms as a split.
        runs = {"node0": runs_of([(0, 2, True), (8, 10, True), (30, 1030, False)]),
                "node1": runs_of([(60, 61, False), (80, 82, True), (100, 101, True)])}
        self.assertEqual(splits(range(0, 200, 5), runs), [])

    def test_two_writable_servers_at_once_are_caught(self):
        # node0 froze (its next question got no answer), woke up and answered writable
        # while node1 already was.
        runs = {"node0": runs_of([(0, 2, True), (20, 520, False), (525, 527, True), (545, 547, True),
                                  (565, 566, False)]),
                "node1": runs_of([(100, 101, True), (300, 301, True), (600, 601, True)])}
        hits = splits(range(0, 700, 5), runs)
        self.assertEqual([at for at, _ in hits], [525, 530, 535, 540, 545])
        self.assertEqual(sorted(hits[0][1]), ["node0", "node1"])

    def test_a_single_writable_answer_inside_the_other_run_counts(self):
        runs = {"node0": [(100, 100)], "node1": [(50, 150)]}
        self.assertEqual([at for at, _ in splits([100], runs)], [100])


if __name__ == "__main__":
    unittest.main()
