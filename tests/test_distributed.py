"""DDP training: two CPU processes on gloo keep identical parameters; the sampler shards the data."""
import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from nfinpaint import distributed
from nfinpaint.cli import UsageError
from nfinpaint.config import load_config
from nfinpaint.crop_store import batch_items

TINY = dict(image_size=16, hole_size=6, local_patch_size=8, batch_size=3, steps=4, g_warmup_steps=1,
            d_warmup_steps=1, compile="never", use_custom_ops=False, feature_weights="random", val_batches=1,
            log_every=1, val_every=1000, sample_every=1000, checkpoint_every=1000, tensorboard=False,
            device="cpu", threads=1, amp="none",
            feature_form="log", texture_weight=0.1)     # the log forms: the whole batch's, on every rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out: str, result_dir: str) -> None:
    import os
    import warnings

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from nfinpaint import distributed
    from nfinpaint.train import train

    from nfinpaint import train as train_module

    info = distributed.setup("cpu")
    config = load_config("default", None, {**TINY, "seed": 0})
    outs, step = [], train_module.Trainer.train_step

    def recording(self, *args):        # this rank's own losses, each step
        out = step(self, *args)
        outs.append({k: float(v) for k, v in out.items()})
        return out

    train_module.Trainer.train_step = recording
    result = train(config, out, info=info, progress=False)
    torch.save(outs, f"{result_dir}/losses{rank}.pt")
    trainer = result["trainer"]
    params = {f"{name}.{k}": v.detach().clone() for name, module in
              (("generator", trainer.generator), ("global_d", trainer.global_d), ("local_d", trainer.local_d),
               ("exported", trainer.inference_generator))
              for k, v in module.named_parameters()}
    torch.save(params, f"{result_dir}/rank{rank}.pt")
    distributed.teardown(info)


def test_two_gloo_processes_stay_in_sync(tmp_path):
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(out), str(tmp_path)), nprocs=2, join=True)
    p0 = torch.load(tmp_path / "rank0.pt")
    p1 = torch.load(tmp_path / "rank1.pt")
    assert p0.keys() == p1.keys() and len(p0) > 10
    for name in p0:
        assert torch.equal(p0[name], p1[name]), name
    # training moved the weights (the ranks saw different data: without DDP's all-reduce they would part)
    from nfinpaint.generator_io import load_generator
    from nfinpaint.networks import Generator
    torch.manual_seed(0)
    initial = Generator(16, variant=load_config("default").generator).state_dict()
    assert not torch.equal(initial["to_rgb.weight"], p0["generator.to_rgb.weight"])
    generator, meta = load_generator(out)
    assert meta["step"] == 4
    # the export is the generator evaluation uses: the weight average when the preset keeps one
    assert torch.equal(generator.state_dict()["to_rgb.weight"], p0["exported.to_rgb.weight"])
    # rank 0 alone wrote the run directory
    assert (out / "metrics.jsonl").exists() and len(list((out / "checkpoints").iterdir())) == 1
    # it validated the initial generator on the crops and holes one process of twice the batch does
    # (val_batches counts whole steps' batches; the holes are seeded by crop): it took half the crops
    from nfinpaint.train import train
    one = train(load_config("default", None, {**TINY, "seed": 0, "batch_size": 2 * TINY["batch_size"]}),
                tmp_path / "one", info=distributed.DistInfo(), progress=False)
    first = [next(r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "val")
             for run in (out, one["run_dir"])]
    assert first[0]["step"] == first[1]["step"] == 0 and first[0]["val_images"] == 2 * TINY["batch_size"]
    assert {k: v for k, v in first[0].items() if k != "elapsed_s"} == {k: v for k, v in first[1].items()
                                                                       if k != "elapsed_s"}
    # its train records hold the step's whole batch: the mean of the two ranks' losses (they held rank 0's)
    ranks = [torch.load(tmp_path / f"losses{rank}.pt") for rank in (0, 1)]
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert len(logged) == 4 and any(a != b for a, b in zip(*ranks))
    # each rank's share differs, but the log-form terms are the log of the whole batch's mean on both
    steps = [(mine, theirs) for mine, theirs in zip(*ranks) if "feature" in mine]
    assert steps and all(mine["l2"] != theirs["l2"] for mine, theirs in steps)
    assert all(mine[name] == theirs[name] for mine, theirs in steps for name in ("feature", "texture"))
    for record, mine, theirs in zip(logged, *ranks):
        assert mine.keys() == theirs.keys() and mine.keys() <= record.keys()
        for name in mine:
            assert record[name] == pytest.approx((mine[name] + theirs[name]) / 2, rel=1e-6, abs=1e-7), name


def _log_worker(rank: int, world_size: int, port: int, shares: list, result_dir: str) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from functools import partial
    from nfinpaint.objective import log_of_mean

    info = distributed.setup("cpu")
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    value = log_of_mean((shares[rank] * x).pow(2).mean(), partial(distributed.mean_over_ranks, info=info))
    value.backward()
    grad = distributed.mean_over_ranks(x.grad, info)          # what DDP does with the ranks' gradients
    torch.save({"value": value.detach(), "grad": grad}, f"{result_dir}/log{rank}.pt")
    distributed.teardown(info)


def test_a_log_form_term_under_two_processes_is_the_log_of_the_whole_batch():
    """feature_form=log took each process's own log and DDP averaged their gradients: another objective,
    which moved with the number of processes (1.7e-4 off a one-process run after one step)."""
    import tempfile

    shares = [torch.rand(5, dtype=torch.float64) + 0.1, torch.rand(5, dtype=torch.float64) * 3 + 0.1]
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_log_worker, args=(2, _free_port(), shares, folder), nprocs=2, join=True)
        got = [torch.load(f"{folder}/log{rank}.pt") for rank in (0, 1)]
    x = torch.linspace(0.5, 2.0, 5, dtype=torch.float64, requires_grad=True)
    whole = torch.stack([(share * x).pow(2).mean() for share in shares]).mean().log()   # one process, both shares
    whole.backward()
    for rank in (0, 1):
        torch.testing.assert_close(got[rank]["value"], whole.detach())
        torch.testing.assert_close(got[rank]["grad"], x.grad)


def test_batch_items_shard_and_resume():
    world, batch = 2, 5
    steps = [[batch_items(step, batch, rank, world) for rank in range(world)] for step in range(4)]
    flat = torch.cat([t for per_step in steps for t in per_step])
    assert torch.equal(flat.sort().values, torch.arange(4 * world * batch))   # every item once, across ranks
    assert torch.equal(batch_items(3, batch, 1, world), steps[3][1])          # position from the step alone


@pytest.mark.parametrize("device", ["cuda:0", "CUDA:1"])
def test_a_gpu_of_ones_own_under_torchrun_is_refused(monkeypatch, device):
    """Every process took the GPU named, and NCCL then failed in its own words."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UsageError, match="each process takes the GPU of its LOCAL_RANK"):
        distributed.setup(device)



GLOO_PEER_GONE = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                  "[127.0.0.1]:3295. This is typically caused by a remote worker crashing. Check the logs of the "
                  "remote worker before reporting an error. GLHF!")


@pytest.mark.parametrize("raised, ours", [(GLOO_PEER_GONE, True), ("CUDA error: an illegal memory access", False)])
def test_a_process_whose_peer_failed_says_so_in_one_line(monkeypatch, capsys, tmp_path, raised, ours):
    """Under torchrun the process whose peer failed ended in gloo's traceback of a lost connection (what
    two gloo processes printed, rank 1 failing in its second step, is ``GLOO_PEER_GONE``), beside the
    peer's own error.  Its own errors keep their traceback.  (The command is run in one process here:
    under load gloo sometimes aborts such a process in C++ instead, which no Python code sees.)"""
    from nfinpaint import train as train_module

    def lost_connection(*args, **kwargs):
        raise RuntimeError(raised)

    monkeypatch.setattr(distributed, "setup", lambda device: distributed.DistInfo(rank=0, world_size=2))
    monkeypatch.setattr(distributed, "teardown", lambda info: None)
    monkeypatch.setattr(train_module, "train", lost_connection)
    argv = ["--feature-weights", "random", "--quiet", "--out", str(tmp_path / "run")]
    if not ours:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            train_module.main(argv)
        return
    assert train_module.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: process 0 of 2 stopped because another process of this run stopped first: that "
                   "process's own error says why (here: Connection closed by peer [127.0.0.1]:3295)"]

def test_an_error_of_ones_own_is_not_taken_for_a_peers():
    two = distributed.DistInfo(rank=1, world_size=2)
    assert distributed.peer_stopped(RuntimeError("Connection closed by peer [127.0.0.1]:1234"), two) is not None
    assert distributed.peer_stopped(torch.distributed.DistBackendError("NCCL communicator was aborted"), two)
    assert distributed.peer_stopped(RuntimeError("CUDA error: an illegal memory access"), two) is None
    assert distributed.peer_stopped(RuntimeError("Connection closed by peer"), distributed.DistInfo()) is None
