"""fastdl.torch under PyTorch's distributed tools, on the CPU: DistributedDataParallel and
ZeroRedundancyOptimizer(optimizer_class=fastdl.torch.AdamW), 2 processes on the gloo backend.

Each job runs this file as a script in 2 processes (ranks 0 and 1, a file:// store in tmp_path), each
rank on its own half of a fixed batch, under one timeout for the whole job: a hang fails in seconds.
The ranks write their results with torch.save; the checks run here. Every run holds fastdl.torch
against torch.optim (foreach=False) in the same process group, and against one process stepping the
whole batch (DDP averages the ranks' gradients: the gradient of the whole batch's mean loss).
The sabotage tests run a job where rank 1's fastdl optimizer has another lr and see the checks fail.
"""

import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

if not dist.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)
if not dist.is_gloo_available():
    pytest.skip("this torch build has no gloo backend for torch.distributed", allow_module_level=True)

import fastdl.torch as fdt  # noqa: E402

WORLD = 2
STEPS = 15
TIMEOUT = 90  # seconds for a whole 2-process job: start-up (importing torch twice on 2 cores) included
DTYPE = torch.float64
TOL = 1e-9

# (optimizer, its arguments, DDP's arguments): every fastdl.torch optimizer under DDP
DDP_CASES = {
    "SGD-momentum": ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3), {}),
    "Adam": ("Adam", dict(lr=1e-2), {}),
    "AdamW": ("AdamW", dict(lr=1e-2, weight_decay=0.1), {}),
    "AdamW-grad-bucket-views": ("AdamW", dict(lr=1e-2, amsgrad=True), dict(gradient_as_bucket_view=True)),
    "RMSprop": ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True), {}),
    "Adagrad": ("Adagrad", dict(lr=0.1), {}),
    "Adadelta": ("Adadelta", dict(lr=1.0), {}),
    "Adamax": ("Adamax", dict(lr=1e-2), {}),
    "NAdam": ("NAdam", dict(lr=1e-2), {}),
}
ZERO_KW = dict(lr=1e-2, weight_decay=0.1)


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.GELU(),
                               torch.nn.Linear(16, 4)).to(DTYPE)


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 12, generator=g).to(DTYPE), torch.randint(0, 4, (32,), generator=g)


def _shard(rank):
    x, y = _data()
    n = len(x) // WORLD
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]


def _step(model, opt, x, y):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


# --- the ranks' side: run as a script ---------------------------------------------------------------

def _ddp_job(rank, spec):
    from torch.nn.parallel import DistributedDataParallel as DDP
    x, y = _shard(rank)
    out = {}
    for name in spec["cases"]:
        opt_name, kw, ddp_kw = DDP_CASES[name]
        runs = {}
        for impl in ("fastdl", "torch"):
            model = _model()
            ddp = DDP(model, **ddp_kw)
            if impl == "fastdl":
                fkw = dict(kw, lr=kw["lr"] * spec["rank1_lr_factor"]) if rank == 1 else kw
                opt = getattr(fdt, opt_name)(ddp.parameters(), **fkw)
            else:
                opt = getattr(torch.optim, opt_name)(ddp.parameters(), foreach=False, **kw)
            for _ in range(STEPS):
                _step(ddp, opt, x, y)
            runs[impl] = _weights(model)
        out[name] = runs
    return out


def _zero_job(rank, spec, tmp):
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP
    x, y = _shard(rank)
    bucket_view = spec["parameters_as_bucket_view"]
    runs, zeros = {}, {}
    for impl, cls in (("fastdl", fdt.AdamW), ("torch", torch.optim.AdamW)):
        model = _model()
        ddp = DDP(model)
        kw = dict(ZERO_KW, lr=ZERO_KW["lr"] * spec["rank1_lr_factor"]) if rank == 1 and impl == "fastdl" else ZERO_KW
        if impl == "torch":
            kw = dict(kw, foreach=False)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, parameters_as_bucket_view=bucket_view,
                                      **kw)
        for _ in range(STEPS):
            _step(ddp, opt, x, y)
        runs[impl] = _weights(model)
        opt.consolidate_state_dict(to=0)  # a collective: every rank calls it
        zeros[impl] = (model, ddp, opt)
    out = dict(runs=runs, rank=rank)
    if rank == 0:
        state = zeros["fastdl"][2].state_dict()
        out["consolidated"] = {impl: copy.deepcopy(zeros[impl][2].state_dict()) for impl in zeros}
        torch.save(state, tmp / "consolidated.pt")
        # the consolidated checkpoint in plain torch.optim.AdamW over one process's copy of the model,
        # one more step on the whole batch
        plain = _model(seed=123)
        plain.load_state_dict(zeros["fastdl"][0].state_dict())
        plain_opt = torch.optim.AdamW(plain.parameters(), **ZERO_KW)
        plain_opt.load_state_dict(state)
        _step(plain, plain_opt, *_data())
        out["plain_next"] = _weights(plain)
    dist.barrier()
    # resuming ZeRO(fastdl.torch.AdamW) from the consolidated checkpoint, on every rank
    state = torch.load(tmp / "consolidated.pt", weights_only=False)
    model2 = _model(seed=456)
    model2.load_state_dict(zeros["fastdl"][0].state_dict())
    ddp2 = DDP(model2)
    opt2 = ZeroRedundancyOptimizer(ddp2.parameters(), optimizer_class=fdt.AdamW,
                                   parameters_as_bucket_view=bucket_view, **ZERO_KW)
    opt2.load_state_dict(state)
    for impl, (model, ddp, opt) in zeros.items():  # one more step of the runs themselves
        _step(ddp, opt, x, y)
        out[f"{impl}_next"] = _weights(model)
    _step(ddp2, opt2, x, y)
    out["resumed_next"] = _weights(model2)
    return out


def _worker(job, rank, store, tmp, spec):
    import datetime
    import traceback
    from pathlib import Path
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=TIMEOUT))
    status = 0
    try:
        tmp = Path(tmp)
        out = _ddp_job(rank, spec) if job == "ddp" else _zero_job(rank, spec, tmp)
        torch.save(out, tmp / f"rank{rank}.pt")
        dist.barrier()  # both ranks' results are written
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without gloo's teardown: at exit its threads' destructors now and then abort the process
    # ("terminate called without an active exception", seen once in CI after the results were written)
    os._exit(status)


# --- the test side ----------------------------------------------------------------------------------

def _run_job(tmp_path, job, **spec):
    """The job on 2 ranks (this file as a script), under one timeout; the ranks' results."""
    spec.setdefault("rank1_lr_factor", 1.0)
    store = tmp_path / "store"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, __file__, job, str(rank), str(store), str(tmp_path), json.dumps(spec)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
             for rank in range(WORLD)]
    deadline = time.monotonic() + TIMEOUT
    outputs = []
    try:
        for p in procs:
            try:
                outputs.append(p.communicate(timeout=max(deadline - time.monotonic(), 0.1))[0])
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                logs = [q.communicate()[0] for q in procs]
                pytest.fail(f"the 2-process {job} job took more than {TIMEOUT} s (a hang?):\n" + "\n".join(
                    f"--- rank {r}:\n{log[-3000:]}" for r, log in enumerate(logs)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    bad = [(r, p.returncode, out) for r, (p, out) in enumerate(zip(procs, outputs)) if p.returncode]
    if bad:
        pytest.fail("\n".join(f"rank {r} exited with {rc}:\n{out[-4000:]}" for r, rc, out in bad))
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _same(ws, vs, what):
    assert len(ws) == len(vs)
    for i, (w, v) in enumerate(zip(ws, vs)):
        assert torch.equal(w, v), f"{what}: parameter {i} differs (max |diff| {(w - v).abs().max().item():.3g})"


def _close(ws, vs, what):
    assert len(ws) == len(vs)
    for i, (w, v) in enumerate(zip(ws, vs)):
        np.testing.assert_allclose(w.numpy(), v.numpy(), rtol=TOL, atol=TOL * v.abs().max().item(),
                                   err_msg=f"{what}: parameter {i}")


def _single_process(opt_cls, kw, steps, model=None, **extra):
    model = model if model is not None else _model()
    opt = opt_cls(model.parameters(), **kw, **extra)
    x, y = _data()
    for _ in range(steps):
        _step(model, opt, x, y)
    return _weights(model)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Every DDP case in one 2-process job (one start-up for all of them)."""
    return _run_job(tmp_path_factory.mktemp("ddp"), "ddp", cases=list(DDP_CASES))


def _check_ddp(results, name):
    opt_name, kw, _ = DDP_CASES[name]
    fastdl = [r[name]["fastdl"] for r in results]
    torch_ = [r[name]["torch"] for r in results]
    _same(fastdl[0], fastdl[1], f"{name}: fastdl.torch's weights on rank 0 and rank 1")
    for rank in range(WORLD):
        _close(fastdl[rank], torch_[rank], f"{name}: fastdl.torch vs torch.optim under DDP, rank {rank}")
    single = _single_process(getattr(fdt, opt_name), kw, STEPS)
    _close(fastdl[0], single, f"{name}: fastdl.torch under DDP vs one process on the whole batch")


@pytest.mark.parametrize("name", list(DDP_CASES))
def test_ddp(ddp_runs, name):
    """DDP-wrapped module stepped by fastdl.torch: the ranks end bit-identical, equal to torch.optim's
    run under the same DDP and to one process on the whole batch."""
    _check_ddp(ddp_runs, name)


def test_ddp_checks_catch_a_rank_with_another_lr(tmp_path):
    """The DDP checks fail when rank 1's fastdl optimizer has a 1% larger lr."""
    results = _run_job(tmp_path, "ddp", cases=["AdamW"], rank1_lr_factor=1.01)
    with pytest.raises(AssertionError, match="rank 0 and rank 1"):
        _check_ddp(results, "AdamW")
    for rank in range(WORLD):  # rank 0 too: its gradients average rank 1's, taken at rank 1's weights
        with pytest.raises(AssertionError, match=f"rank {rank}"):
            _close(results[rank]["AdamW"]["fastdl"], results[rank]["AdamW"]["torch"], f"rank {rank}")


def _check_zero(results):
    r0, r1 = results
    # N steps: ZeRO(fastdl.torch.AdamW) as ZeRO(torch.optim.AdamW), the ranks bit-identical
    _same(r0["runs"]["fastdl"], r1["runs"]["fastdl"], "ZeRO(fastdl.torch.AdamW): rank 0 and rank 1")
    _close(r0["runs"]["fastdl"], r0["runs"]["torch"], "ZeRO: fastdl.torch.AdamW vs torch.optim.AdamW")
    _close(r0["runs"]["fastdl"], _single_process(fdt.AdamW, ZERO_KW, STEPS),
           "ZeRO(fastdl.torch.AdamW) vs one process on the whole batch")
    # the consolidated state: torch's layout and values
    ours, theirs = r0["consolidated"]["fastdl"], r0["consolidated"]["torch"]
    assert sorted(ours["state"]) == sorted(theirs["state"]) == list(range(len(r0["runs"]["fastdl"])))
    for key, st in theirs["state"].items():
        assert set(ours["state"][key]) == set(st), key
        for name, value in st.items():
            _close([ours["state"][key][name]], [value], f"consolidated state {key}: {name!r}")
    assert [len(g["params"]) for g in ours["param_groups"]] == [len(g["params"]) for g in theirs["param_groups"]]
    assert [g["lr"] for g in ours["param_groups"]] == [g["lr"] for g in theirs["param_groups"]]
    # one more step: of ZeRO(fastdl), of plain torch.optim.AdamW loaded with the consolidated state, of a
    # ZeRO(fastdl) resumed from it
    _same(r0["fastdl_next"], r1["fastdl_next"], "ZeRO(fastdl.torch.AdamW), one more step: rank 0 and rank 1")
    _close(r0["plain_next"], r0["fastdl_next"],
           "torch.optim.AdamW loaded with ZeRO(fastdl)'s consolidated state vs ZeRO(fastdl), one more step")
    _close(r0["plain_next"], r0["torch_next"],
           "torch.optim.AdamW loaded with ZeRO(fastdl)'s consolidated state vs ZeRO(torch), one more step")
    for r in results:
        _same(r["resumed_next"], r["fastdl_next"], f"ZeRO(fastdl) resumed from the checkpoint, rank {r['rank']}")


@pytest.mark.parametrize("bucket_view", [False, True], ids=["params", "parameters_as_bucket_view"])
def test_zero_redundancy_optimizer(tmp_path, bucket_view):
    """ZeroRedundancyOptimizer(optimizer_class=fastdl.torch.AdamW) under DDP: N steps as with torch.optim.AdamW;
    the consolidated state_dict is torch's and loads into plain torch.optim.AdamW (and back into ZeRO), whose
    next step is ZeRO's."""
    _check_zero(_run_job(tmp_path, "zero", parameters_as_bucket_view=bucket_view))


def test_zero_checks_catch_a_rank_with_another_lr(tmp_path):
    """The ZeRO checks fail when rank 1's ZeRO(fastdl.torch.AdamW) has a 1% larger lr (rank 1 steps its half of
    the parameters with it and broadcasts them: the ranks agree, torch.optim does not)."""
    results = _run_job(tmp_path, "zero", parameters_as_bucket_view=False, rank1_lr_factor=1.01)
    with pytest.raises(AssertionError, match="fastdl.torch.AdamW vs torch.optim.AdamW"):
        _check_zero(results)


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
