"""benchmarks.class_chains: a class's chains through the scheduler together, and the same chains one by one."""
from benchmarks.class_chains import batched, main, one_by_one, players
from helpers_app import save_tiny_model
from model import Sampler


def test_every_visitor_gets_frames_and_the_same_chains_run_one_by_one(tmp_path):
    sampler = Sampler.from_pretrained(str(save_tiny_model(tmp_path / "mebm")), device="cpu")
    ps = players(sampler, 3)
    assert [p.settings.seed for p in ps] == [0, 1, 2]          # each visitor its own seed
    assert all(p.observed.tolist() == [True] + [False] * (len(p.observed) - 1) for p in ps)
    total, first = batched(sampler, 3)
    assert len(first) == 3 and all(f is not None and 0 < f <= total for f in first)
    assert one_by_one(sampler, 2) > 0


def test_the_command_prints_both_paths_and_their_ratio(tmp_path, capsys):
    main(["--users", "2", "--repeats", "1", "--device", "cpu", "--threads", "1",
          "--checkpoint", str(save_tiny_model(tmp_path / "mebm"))])
    out = capsys.readouterr().out
    assert "2 users x 3 samples" in out and "batched class all done" in out and "one after another" in out
    assert "ratio" in out
