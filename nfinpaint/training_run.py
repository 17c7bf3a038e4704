"""A training run on disk: its directory, what it records, its checkpoints and its exported generator.

:class:`Run` is everything ``python -m nfinpaint.train`` writes, so the recipe
(:mod:`nfinpaint.train`) only trains.  In order:

1. :meth:`Run.prepare` checks everything that can refuse the run (the resume
   point, the run directory, the data folders, the operators it needs), writes
   nothing, and sets the CPU threads (a resumed run: its own count);
2. :meth:`Run.restore` puts a resumed (or fine-tuned) run's models, optimisers and random
   states back (bit for bit);
3. :meth:`Run.start` takes the directory (lock), writes ``config.toml`` and the
   ``start``/``resume`` record of ``metrics.jsonl`` and prints the run's lines;
4. during training :meth:`log`, :meth:`samples`, :meth:`checkpoint`, and at the
   end :meth:`export` (``generator.pt``) and :meth:`finish`.

Every file records its provenance: the resolved config, the versions in use
(:func:`nfinpaint.provenance.versions`), the feature network's weights and
whether they are pretrained.  Only the main process writes (torchrun).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from nfinpaint import _extension, distributed, generator_io, generators
from nfinpaint.checkpoint import CHECKPOINT_DIR, list_checkpoints, rng_state, save_checkpoint, set_rng_state
from nfinpaint.config import ConfigError, TrainConfig, changed_from_preset
from nfinpaint.data import files_digest
from nfinpaint.devices import set_cpu_threads
from nfinpaint.errors import NfinpaintError
from nfinpaint.figures import save_comparison_grid
from nfinpaint.files import remove_stale_temps
from nfinpaint.provenance import versions
from nfinpaint.resume import (ResumePoint, check_config_file, find_resume_point, fine_tune_origin,
                              set_aside_later_checkpoints)
from nfinpaint.run_dir import (MetricsLog, RunLock, check_new_run_dir, check_not_in_use, check_outside_data,
                               default_run_dir, metrics_to_keep, say, write_config)


class TrainingDiverged(NfinpaintError, RuntimeError):
    """The loss became NaN or infinite: the run stopped, and nothing of that step was saved."""


def training_meta(config: TrainConfig, *, step: int, complete: bool, **extra) -> dict:
    """The meta of a training's exported generator: the model's geometry, how it was trained, and the
    data split (so evaluation can hold the same images out without the run's config.toml)."""
    data = config.data or "the embedded scikit-image photographs"
    state = "" if complete else ", interrupted"
    description = f"{config.preset} preset, step {step}{state}, trained on {data}"
    return {"preset": config.preset, "generator": config.generator, "val_data": config.val_data,
            "image_size": config.image_size, "hole_size": config.hole_size,
            "local_patch_size": config.local_patch_size, "train_masks": config.train_masks,
            "data": config.data, "seed": config.seed, "split": config.split().as_meta(), "step": step,
            "steps": config.steps, "settings_changed_from_preset": changed_from_preset(config),
            "complete": complete, "description": description, **extra}


def check_same_files(point: ResumePoint, config: TrainConfig, files: str | None) -> None:
    """ConfigError when the data folders no longer hold the files the run's checkpoint trained on
    (``files``: their :func:`~nfinpaint.data.files_digest` now): the crops (and a split by file) follow
    the files found, so a resume went on with other data, silently, and could validate on pictures it
    had trained on."""
    folders = " and ".join(repr(str(f)) for f in (config.data, config.val_data) if f)
    for folder in (config.data, config.val_data):
        if folder and not Path(folder).is_dir():
            # not "point --data at a folder": a resume keeps its folders (a moved one is refused)
            raise ConfigError(f"the run's data folder {str(folder)!r} is gone: put it back (or a link to where it "
                              f"is now), or train on the moved folder as a new run from this one with "
                              f"--fine-tune {point.run_dir} --data NEW_PLACE --out NEW_RUN")
    recorded = point.payload.get("data_files")
    if recorded is None or recorded == files:
        return      # checkpoints written before the digest was recorded: nothing to compare
    raise ConfigError(f"the files in {folders} changed since {point.checkpoint.name} (added, removed or replaced): "
                      f"a resumed run would train on other crops than it did, and could validate on pictures it "
                      f"trained on; put the files back, or train on these as a new run from this one with "
                      f"--fine-tune {point.run_dir} --out NEW_RUN")


def check_same_feature_weights(point: ResumePoint, source: str) -> None:
    """ConfigError when a resume would load other feature weights than the run trained with (a run
    that recorded a relative path, resumed from another working folder, silently loaded whatever
    file of that name was there)."""
    recorded = point.payload.get("feature_weights")
    if recorded is None or recorded == source:
        return
    raise ConfigError(f"the run trained its feature loss with {recorded}; resumed from here it would load "
                      f"{source}: resume from the folder the run was started in (or put the file back), or go "
                      f"on with these weights as a new run from this one with --fine-tune {point.run_dir} "
                      f"--feature-weights PATH --out NEW_RUN")


class Run:
    """One run directory (new or resumed) and the process's part in writing it."""

    def __init__(self, config: TrainConfig, run_dir: Path, point: ResumePoint | None,
                 info: distributed.DistInfo, kept_metrics: list[str] | None, origin: ResumePoint | None = None):
        self.config, self.dir, self.point, self.info = config, run_dir, point, info
        self.origin = origin    # the checkpoint a fine-tune starts from
        self.is_main = info.is_main
        start = point or origin
        self.start_step = start.step if start is not None else 0
        self._kept_metrics = kept_metrics
        self.samples_dir = run_dir / "samples"
        self.lock: RunLock | None = None
        self.bar = None
        self.val: dict[str, float] = {}     # the newest validation's results
        self.val_step: int | None = None   # and its step
        self.compiled: bool | None = None  # whether the step is compiled (start)
        self.metrics: MetricsLog | None = None
        self.provenance: dict = {}
        self.initialised_from: dict | None = None   # the generator file a new run's generator starts from
        self.threads = 0
        self.files: str | None = None       # data.files_digest of the folders it trains on
        if point is not None:      # the checkpoint's step was validated before it was saved: not again at the end
            for line in kept_metrics or []:
                record = json.loads(line)
                if record.get("kind") == "val" and record.get("step") == point.step:
                    self.val = {k: v for k, v in record.items() if k not in ("kind", "step")}
                    self.val_step = point.step

    # -- before anything is written ----------------------------------------------------------

    @classmethod
    def prepare(cls, config: TrainConfig, out: str | os.PathLike | None, resume: ResumePoint | str | os.PathLike | None,
                info: distributed.DistInfo, fine_tune: ResumePoint | None = None) -> "Run":
        """The run directory ``out`` (a new run, or a fine-tune of ``fine_tune``'s checkpoint) or the run at
        ``resume``, checked; nothing is written."""
        point = find_resume_point(resume) if isinstance(resume, (str, os.PathLike)) else resume
        files = files_digest(config.data, config.val_data)      # recorded in its checkpoints
        if point is not None and fine_tune is not None:
            raise ConfigError("a run either resumes or fine-tunes, not both")
        if point is not None:
            run_dir = point.run_dir
            if config.steps < point.step:
                raise ConfigError(f"the run in {run_dir} is already at step {point.step}; pass --steps N with "
                                  f"N >= {point.step} to continue it")
            if point.payload.get("world_size", 1) != info.world_size:
                say(info.is_main, f"note: the run used {point.payload.get('world_size', 1)} processes, now "
                                  f"{info.world_size}: it continues, but not bit for bit")
            check_same_files(point, config, files)
            if info.is_main:
                check_not_in_use(run_dir)
                check_config_file(point, config)
        else:
            if out is not None and not str(out).strip():
                raise ConfigError("--out is empty; give the name of a folder for the run directory")
            run_dir = Path(distributed.broadcast_object(str(out or default_run_dir(config)), info))
            if info.is_main:
                check_new_run_dir(run_dir)
        check_outside_data(run_dir, config)
        if config.use_custom_ops and not _extension.is_built():
            if generators.spec(config.generator).needs_operators:
                raise ConfigError(f"the {config.generator} generator's base fill needs the compiled operators "
                                  f"(nfinpaint._C), which are not built: install with `pip install .`, or pass "
                                  f"--set use_custom_ops=false (the PyTorch references of the losses and of the "
                                  f"base fill's solver: slower)")
            raise ConfigError("use_custom_ops = true needs the compiled operators (nfinpaint._C), which are not "
                              "built: install with `pip install .`, or pass --set use_custom_ops=false")
        kept = metrics_to_keep(run_dir, point.step) if point is not None and info.is_main else None
        run = cls(config, run_dir, point, info, kept, origin=fine_tune)
        # a resumed run (and a fine-tune) reuses its thread count: bit for bit needs the same one
        start = point or fine_tune
        run.threads, note = set_cpu_threads(config.threads or (start.payload.get("threads", 0) if start else 0),
                                            info.device)
        if note:
            say(info.is_main, note)
        was = point.payload.get("threads") if point is not None else None
        if was and run.threads and was != run.threads:      # --threads may change on resume, at this price
            say(info.is_main, f"note: the run used {was} threads, now {run.threads}: it continues, but not bit "
                              f"for bit (float sums are split by thread)")
        run.files = files
        return run

    def restore(self, trainer) -> int:
        """A resumed or fine-tuned run's models, optimisers and random states, as its checkpoint saved
        them; the step to start at (0 for a new run)."""
        start = self.point or self.origin
        if start is not None:
            trainer.load_state_dict(start.payload)
            set_rng_state(start.payload["rng"])
        return self.start_step

    # -- writing ------------------------------------------------------------------------------

    def start(self, feature_net: torch.nn.Module, data: str, amp: torch.dtype | None, compiled: bool) -> None:
        """Take the run directory (created, locked: a second training into it fails here with one
        line), write config.toml and the first record, and say what the run is (``data``: its sets)."""
        info, config, threads = self.info, self.config, self.threads
        if self.point is not None:
            check_same_feature_weights(self.point, feature_net.weights_source)
        # the precision "auto" chose on this machine (bf16 where the CPU computes it natively): recorded in the
        # start record, checkpoints and generator.pt, where config.toml says only "auto"
        precision = "bf16" if amp == torch.bfloat16 else "fp32"
        self.provenance = {"feature_weights": feature_net.weights_source, "feature_pretrained": feature_net.pretrained,
                           "data_files": self.files, "precision": precision}
        if self.origin is not None:
            self.provenance["fine_tuned_from"] = fine_tune_origin(self.origin, config)
        elif self.point is not None and self.point.payload.get("fine_tuned_from"):
            self.provenance["fine_tuned_from"] = self.point.payload["fine_tuned_from"]
        start = self.point or self.origin
        initialised = self.initialised_from or (start.payload.get("initialised_from") if start else None)
        if initialised:     # kept through resumes and fine-tunes: the weights still descend from that file
            self.provenance["initialised_from"] = initialised
        self.lock = RunLock(self.dir, new=self.point is None) if self.is_main else None
        if self.is_main:
            # temporary files of a writer killed mid-write (kill -9): no other process writes here now
            for folder in (self.dir, self.dir / CHECKPOINT_DIR, self.samples_dir):
                for stale in remove_stale_temps(folder):
                    say(True, f"note: removed {stale}, a temporary file left by a run that was killed mid-write")
            if self.point is not None:
                aside = set_aside_later_checkpoints(self.point)
                if aside is not None:
                    say(True, f"note: resuming from step {self.point.step}, older than the run's newest checkpoint: "
                              f"a new branch starts here; the later checkpoints are moved to {aside}")
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.dir, config, feature_net.weights_source, feature_net.pretrained)
            self.metrics = MetricsLog(self.dir, self._kept_metrics, config.tensorboard)
        distributed.barrier(info)
        untrained = " (UNTRAINED: random weights, smoke runs only)" if feature_net.pretrained is False else ""
        for line in (f"run directory: {self.dir}", f"data: {config.data or 'embedded scikit-image photographs'}: {data}",
                     f"device: {info.device} x {info.world_size} process(es), {threads} CPU thread(s); "
                     f"compiled step={'yes' if compiled else 'no'} "
                     f"(compile={config.compile}), channels_last={config.channels_last}, "
                     f"amp={'bf16' if amp else 'off (fp32)'}, custom ops={config.use_custom_ops}",
                     (f"feature network: VGG-19 {config.feature_layer}, weights {feature_net.weights_source}{untrained}"
                      if feature_net.pretrained is not None else f"feature network: {feature_net.weights_source}"),
                     f"schedule: {config.schedule()}, to step {config.steps}"
                     + (f"; resuming at step {self.start_step}" if self.point is not None else "")
                     + (f"; fine-tuning {self.origin.checkpoint} from step {self.start_step}"
                        if self.origin is not None else "")):
            say(self.is_main, line)
        was = self.point.payload.get("compiled") if self.point is not None else None
        if was is not None and was != compiled:   # --no-compile / --set compile may change on resume, at this price
            say(self.is_main, f"note: the run's step was {'' if was else 'not '}compiled, now it is"
                              f"{'' if compiled else ' not'}: it continues, but not bit for bit (the compiled "
                              f"and the eager step round differently)")
        self.compiled = compiled
        was = self.point.payload.get("precision") if self.point is not None else None
        if was is not None and was != precision:     # amp = "auto" on another machine, or --set amp changed
            say(self.is_main, f"note: the run trained in {was}, now in {precision} (amp={config.amp} on this "
                              f"machine): it continues, but not bit for bit")
        self.log({"kind": "start" if self.point is None else "resume", "step": self.start_step,
                  "preset": config.preset, **self.provenance, "world_size": info.world_size,
                  "device": str(info.device), "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def log(self, record: dict) -> None:
        """One record of metrics.jsonl (and TensorBoard)."""
        if self.metrics is not None:
            self.metrics.write(record)

    # -- progress -----------------------------------------------------------------------------

    def open_progress(self, show: bool) -> None:
        """The progress bar (main process, ``show``), and the clocks of the steps' records."""
        from tqdm import tqdm  # noqa: PLC0415

        self.bar = tqdm(total=self.config.steps, initial=self.start_step, disable=not (self.is_main and show),
                        dynamic_ncols=True, mininterval=1.0, desc="train")
        self.t0 = self._window_start = time.perf_counter()
        self._window_images = 0

    def logs_at(self, step: int) -> bool:
        """Whether step ``step`` (1-based) writes a train record: every ``log_every`` steps and the last."""
        return step % self.config.log_every == 0 or step == self.config.steps

    def stepped(self, step: int, stage: str, out: dict[str, torch.Tensor], images: int) -> None:
        """After step ``step`` (1-based) of ``stage`` on ``images`` images (all processes): every
        ``log_every`` steps and at the last, a train record (losses, images per second)."""
        self._window_images += images
        if self.is_main and self.logs_at(step):
            values = {k: float(v) for k, v in out.items()}
            now = time.perf_counter()
            self.log({"kind": "train", "step": step, "stage": stage, **values,
                      "images_per_s": self._window_images / max(now - self._window_start, 1e-9),
                      "elapsed_s": now - self.t0})
            self._window_start, self._window_images = now, 0
            self.bar.set_postfix({"stage": stage[:5], **{k: f"{v:.4g}" for k, v in values.items()}}, refresh=False)
        self.bar.update(1)

    def validated(self, step: int, val: dict[str, float]) -> None:
        """The validation at ``step``: logged, shown on the bar, kept for the export and the end record."""
        self.val, self.val_step = val, step
        self.log({"kind": "val", "step": step, **val})
        if "val_psnr_hole" in val and self.bar is not None:
            self.bar.set_description(f"train (val hole PSNR {val['val_psnr_hole']:.2f} dB)", refresh=False)

    def close_progress(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def samples(self, step: int, images: torch.Tensor, masks: torch.Tensor, filled: torch.Tensor) -> None:
        """samples/step_N.png: original | masked | filled."""
        if self.is_main:
            save_comparison_grid(self.samples_dir / f"step_{step:07d}.png", images, masks, {"filled": filled})

    def checkpoint(self, step: int, trainer) -> Path | None:
        """checkpoints/step_N.pt: the config, the models and optimisers, the random states and the provenance."""
        if not self.is_main:
            return None
        return save_checkpoint(self.dir, step, {"config": dataclasses.asdict(self.config), **trainer.state_dict(),
                                                "rng": rng_state(), "world_size": self.info.world_size,
                                                "threads": self.threads, "compiled": self.compiled,
                                                "versions": versions(), **self.provenance})

    def export(self, step: int, complete: bool, generator: torch.nn.Module, loss_weights: dict) -> None:
        """generator.pt: the generator to evaluate and use, with its meta (nfinpaint.generator_io)."""
        if self.is_main:
            meta = training_meta(self.config, step=step, complete=complete, **self.provenance,
                                 loss_weights=loss_weights, val=self.val, versions=versions())
            generator_io.save_generator(self.dir / generator_io.GENERATOR_FILENAME, generator, meta)

    def finish(self, step: int, interrupted: bool, checkpoint: Path | None) -> None:
        """The end record and the closing line."""
        distributed.barrier(self.info)
        val = self.val
        self.log({"kind": "end", "step": step, "interrupted": interrupted, "elapsed_s": time.perf_counter() - self.t0,
                  **val})
        self.close()
        if interrupted:
            say(self.is_main, f"interrupted at step {step}: checkpoint {checkpoint}; continue with --resume {self.dir}")
        else:
            summary = ", ".join(f"{k} {v:.2f}" for k, v in val.items() if k.startswith("val_psnr")) or "no validation"
            say(self.is_main, f"done: {step} steps; {summary}; generator exported to {self.dir / 'generator.pt'}")

    def check_finite(self, step: int, stage: str, out: dict[str, torch.Tensor], models) -> None:
        """Stop with :meth:`diverged` when the step's losses, or any weight of ``models`` after its update,
        are not finite: a finite loss can still give an update that is not, and a checkpoint or a
        generator.pt with such weights would carry the damage on.  Checked every step, so every
        checkpoint on disk holds finite weights."""
        tensors = [*out.values(), *(p for model in models for p in model.parameters())]
        bad = not bool(torch.stack([t.detach().isfinite().all() for t in tensors]).all())
        if distributed.any_rank(bad, self.info):
            raise self.diverged(step, stage, {k: float(v) for k, v in out.items()})

    def diverged(self, step: int, stage: str, values: dict[str, float]) -> TrainingDiverged:
        """Log the stop and say what is left: the weights of this step are not saved (they are not
        finite, or soon will be), so the last checkpoint is the one before it."""
        self.close_progress()
        self.log({"kind": "diverged", "step": step, "stage": stage, **values})
        self.close()
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        what = (f"the loss is not finite ({shown})" if not all(map(math.isfinite, values.values())) else
                f"the weights are not finite after its update (loss {shown})")
        saved = list_checkpoints(self.dir)
        before = (f"the last checkpoint before it is {saved[-1][1]}" if saved else
                  "no checkpoint was saved before it")
        return TrainingDiverged(f"training stopped at step {step} ({stage} stage): {what}; "
                                f"nothing of this step was saved, {before}; start again with a lower lr or smaller "
                                f"loss weights")

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def release(self) -> None:
        """Let go of the run directory (also after an error)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
