"""Training's own state, on a tiny decoder: LoRA weights written by one run start the next (init_lora)
unchanged, lora_lr 0 trains the adapter alone, an example without gradient is logged but not trained on, a
checkpoint resumes exactly what was saved, and the loss log is what the curve is drawn from."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from e2llm_offline.decoder import load_gguf
from e2llm_offline.train import Adapter, Checkpoint, FrozenDecoder, LoRA, Progress, parameter_groups, run_steps
from tiny import write_gguf

TARGETS = ["q_proj", "v_proj", "down_proj"]


def tiny_lora(tmp_path, rank: int = 2, seed: int = 0) -> LoRA:
    write_gguf(tmp_path / "tiny.gguf")
    torch.manual_seed(seed)
    lora = LoRA(FrozenDecoder(load_gguf(tmp_path / "tiny.gguf")), rank, 4.0, TARGETS)
    with torch.no_grad():
        for b in lora.b.values():
            b.normal_()
    return lora


def test_lora_weights_start_the_next_run_unchanged(tmp_path):
    trained = tiny_lora(tmp_path, seed=1)
    fresh = tiny_lora(tmp_path, seed=2)
    assert not torch.equal(fresh.a["0_q_proj"], trained.a["0_q_proj"])
    fresh.load_tensors(trained.tensors())
    for key in trained.a:
        torch.testing.assert_close(fresh.a[key], trained.a[key])
        torch.testing.assert_close(fresh.b[key], trained.b[key])
    x = torch.randn(3, fresh.a["0_q_proj"].shape[1])
    torch.testing.assert_close(fresh.delta(0, "q_proj", x), trained.delta(0, "q_proj", x))


def test_lora_of_another_rank_or_targets_is_refused(tmp_path):
    other_rank = tiny_lora(tmp_path, rank=3).tensors()
    with pytest.raises(ValueError, match="rank 3, not 2"):
        tiny_lora(tmp_path, rank=2).load_tensors(other_rank)
    fewer = {k: v for k, v in tiny_lora(tmp_path).tensors().items() if "v_proj" not in k}
    with pytest.raises(ValueError, match="v_proj"):
        tiny_lora(tmp_path).load_tensors(fewer)


def test_lora_lr_zero_trains_the_adapter_alone(tmp_path):
    lora, adapter = tiny_lora(tmp_path), Adapter(4, 8)
    config = {"lr": 1e-3, "lora_lr": 1e-3, "init_lora": "onnx/adapter/lora.safetensors"}
    groups, frozen = parameter_groups(config, adapter, lora)
    assert not frozen and len(groups) == 2 and all(p.requires_grad for p in lora.parameters())
    groups, frozen = parameter_groups({**config, "lora_lr": 0.0}, adapter, lora)
    assert frozen and len(groups) == 1 and groups[0]["params"] == list(adapter.parameters())
    assert not any(p.requires_grad for p in lora.parameters())
    with pytest.raises(SystemExit, match="init_lora"):
        parameter_groups({"lr": 1e-3, "lora_lr": 0.0}, adapter, tiny_lora(tmp_path))
    assert parameter_groups(config, adapter, None) == ([{"params": list(adapter.parameters()), "base_lr": 1e-3}],
                                                       False)


def test_an_example_nothing_trained_takes_part_in_is_logged_not_trained_on():
    # With the LoRA frozen, a hybrid example whose chunks were all retrieved has no soft token: its loss
    # has no gradient. The step goes on with the other examples' gradients.
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    config = {"steps": 1, "warmup": 1, "checkpoint_every": 10}
    batch = [SimpleNamespace(task="a"), SimpleNamespace(task="b")]

    def loss_of(example):
        return model(torch.ones(2)).sum() if example.task == "a" else torch.tensor(2.0)

    progress = Progress(config, 0, [])
    step = run_steps(config, None, optimizer, [0.1], list(model.parameters()), progress, 0, ("a", "b"),
                     lambda: batch, loss_of, lambda step: None)
    assert step == 1 and not torch.equal(model.weight, before)
    assert progress.log[0]["loss_b"] == 2.0


def test_checkpoint_resumes_weights_optimizer_step_and_log(tmp_path):
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    checkpoint = Checkpoint(tmp_path / "checkpoint-x.pt", {"adapter": model, "lora": None}, optimizer,
                            torch.device("cpu"))
    assert checkpoint.resume() == (0, [])
    checkpoint.save(7, [{"step": 7, "seconds": 12.5}])
    assert not (tmp_path / "checkpoint-x.tmp").exists()

    again = torch.nn.Linear(4, 2)
    again_optimizer = torch.optim.AdamW(again.parameters(), lr=0.1)
    resumed = Checkpoint(tmp_path / "checkpoint-x.pt", {"adapter": again, "lora": None}, again_optimizer,
                         torch.device("cpu"))
    assert resumed.resume() == (7, [{"step": 7, "seconds": 12.5}])
    torch.testing.assert_close(again.weight, model.weight)
    assert again_optimizer.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    resumed.remove()
    assert not (tmp_path / "checkpoint-x.pt").exists()


def test_progress_logs_mean_loss_per_task_and_counts_time_across_sessions(capsys):
    config = {"steps": 10, "warmup": 2}
    progress = Progress(config, 4, [{"step": 4, "lr_scale": 1.0, "loss_rag": 5.0, "loss_full": 1.0, "seconds": 100.0}])
    for step in range(5, 7):
        progress.record(step, {"rag": [1.0, 3.0]}, ("rag", "full"))
    row = progress.log[-1]
    assert row["step"] == 6 and row["loss_rag"] == 2.0 and np.isnan(row["loss_full"])
    assert row["seconds"] >= 100.0
    # the printed means cover the last 20 steps, the resumed session's included
    assert "step 5/10: rag 3.50 full 1.00" in capsys.readouterr().out
    assert not progress.out_of_time(None) and not progress.out_of_time(5.0)
