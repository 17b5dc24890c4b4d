"""Checkpoints: a round trip keeps every entry; a crash while saving leaves the previous one."""

from __future__ import annotations

import pytest
import torch

from nfsd_backend.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint


def state(step: int) -> dict:
    generator = torch.Generator().manual_seed(step)
    return {"step": step, "field": {"w": torch.randn(3, 4, generator=generator)},
            "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.01, "params": [0]}]},
            "generator": generator.get_state()}


def test_round_trip_keeps_every_entry(tmp_path):
    save_checkpoint(tmp_path, state(3))
    loaded = load_checkpoint(tmp_path)
    assert loaded["step"] == 3 and loaded["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert torch.equal(loaded["field"]["w"], state(3)["field"]["w"])
    assert torch.equal(loaded["generator"], state(3)["generator"])


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, state(1))
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("nfsd_backend.rundir.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, state(2))
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    assert [p.name for p in (tmp_path / CHECKPOINT_NAME).parent.iterdir()] == ["last.pt"]  # no temporary left
