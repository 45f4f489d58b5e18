"""DACS (Tranheden et al., WACV 2021): self-training with an EMA teacher, pseudo-labels and ClassMix,
as its official code does it (``vikolss/DACS`` trainUDA.py at cc6a87f; DAFormer's options one key away).

One iteration (trainUDA.py L367-511), ``i`` the iteration:

1. L_src = CE(student(x_s), y_s), the mean over labelled pixels;
2. the teacher's softmax on the un-augmented target x_t: pseudo-label ŷ_t = argmax, weight
   q = #(max-prob ≥ 0.968) / #pixels, one scalar for the batch;
3. ClassMix: M = the pixels of ⌈n/2⌉ of the n classes in y_s (255 among them, as the code);
   x_m = M·x_s + (1 − M)·x_t, y_m = M·y_s + (1 − M)·ŷ_t, w_m = M·1 + (1 − M)·q; then colour jitter
   (strength 0.25, when U(0, 1) > 0.2) and Gaussian blur (when U(0, 1) > 0.5, σ ~ U(0.15, 1.15)) on x_m;
4. L_mix = mean over all pixels of w_m · CE(student(x_m), y_m) (255 contributes 0);
5. one backward of L_src + λ_u·L_mix, one SGD step, then θ_t ← a_i·θ_t + (1 − a_i)·θ_s with
   a_i = min(1 − 1/(i + 1), α).
"""

from __future__ import annotations

import copy
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from dada.data.classes import class_set
from dada.errors import DadaError
from dada.io import write_json
from dada.methods import selftraining as st
from dada.methods.base import Method, MethodSettings, forward_upsampled
from dada.models import Segmenter


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                ignore_index: int = 255) -> torch.Tensor:
    """DACS's ``CrossEntropyLoss2dPixelWiseWeighted`` (utils/loss.py): per-pixel CE (0 where ignored)
    times the weight, averaged over ALL pixels."""
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    return torch.mean(loss * weight)


def _batch_shape(spec: DictConfig) -> tuple[int, int, int] | None:
    """(batch, H, W) a dataset's batches will have, when the config fixes it (a crop or a size)."""
    crop = spec.augment.crop
    size = crop if crop is not None else spec.size
    return None if size is None else (int(spec.batch_size), int(size[0]), int(size[1]))


class DACS(Method):
    """DACS; :mod:`dada.methods.dast` builds depth-aware self-training on it."""

    @dataclass
    class Settings(MethodSettings):
        name: str = "dacs"
        alpha: float = 0.99  # EMA α: trainUDA.py L510 (DAFormer's recipe 0.999: dacs_a999_fdthings.py)
        pseudo_threshold: float = 0.968  # trainUDA.py L467
        lambda_mix: float = 1.0  # consistency_weight: configs/configUDA.json "consistency_weight": 1
        # DAFormer's pseudo-label crop (dacs.py L280-286): weight 0 in the top/bottom rows; DACS: none
        pl_ignore_top: int = 0
        pl_ignore_bottom: int = 0
        # ClassMix candidates: DACS draws each image's classes from torch.unique of its own label with 255
        # kept (trainUDA.py L426-427, the filter commented out); batch_classes: DAFormer's whole-batch
        # unique (dacs_transforms.py L93, DAFormer#19); mix_ignore false: the paper's "classes" only
        batch_classes: bool = False
        mix_ignore: bool = True
        color_jitter: bool = True  # configUDA.json "color_jitter": true
        jitter_strength: float = 0.25  # transformsgpu.py L6 default s=.25 (DAFormer's config: 0.2)
        jitter_skip: float = 0.2  # transformsgpu.py L9: jitter when U(0,1) > 0.2, i.e. with probability 0.8
        blur: bool = True  # configUDA.json "blur": true; transformsgpu.py L20-22: when U(0,1) > 0.5
        # transformsgpu.py L22: U(.15, 1.15)
        blur_sigma: list[float] = field(default_factory=lambda: [0.15, 1.15])
        # DAFormer's training strategies that apply to CNN backbones, each off here (DACS has none):
        # ImageNet feature distance (mmseg/models/uda/dacs.py calc_feat_dist; configs/_base_/uda/
        # dacs_a999_fdthings.py: imnet_feature_dist_lambda 0.005, classes = the thing classes, scale min
        # ratio 0.75): λ·mean over thing-class cells of ‖f_student − f_ImageNet‖₂ on the backbone's last
        # features of the source image, against a frozen copy of the initial (ImageNet) backbone
        fd_lambda: float = 0.0
        fd_classes: list[str] = field(default_factory=lambda: [
            "light", "sign", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"])
        fd_scale_min_ratio: float = 0.75
        # rare-class sampling (mmseg/datasets/uda_dataset.py; dacs_a999_fdthings + rcs0.01: T = 0.01,
        # min_pixels 3000 at DAFormer's source sizes): P(class c) = softmax((1 − f_c)/T) over the source's
        # pixel frequencies f_c, then an image with ≥ rcs_min_pixels of c; null: off (DACS)
        rcs_temperature: float | None = None
        rcs_min_pixels: int = 3000
        # linear learning-rate warm-up (mmcv's 'linear' warmup as DAFormer's schedule: 1,500 iterations,
        # ratio 1e-6): lr_i = poly_i · (1 − (1 − i/warmup_iters)(1 − warmup_ratio)) for i < warmup_iters
        warmup_iters: int = 0
        warmup_ratio: float = 1e-6
        # ema_after_step: DACS updates the teacher after the step with a_i (trainUDA.py L508-511);
        # false: DAFormer's order, at the start of iteration i > 0 (dacs.py L213-218)
        ema_after_step: bool = True
        eval_model: str = "student"  # the network evaluated: student (DACS, DAFormer#23) | teacher

    @staticmethod
    def _check_values(method: DictConfig) -> None:
        if method.eval_model not in ("student", "teacher"):
            raise DadaError(f"method.eval_model must be 'student' or 'teacher', got {method.eval_model!r}")
        if len(method.blur_sigma) != 2 or method.blur_sigma[0] > method.blur_sigma[1]:
            raise DadaError(f"method.blur_sigma must be [low, high], got {list(method.blur_sigma)}")

    @classmethod
    def check_settings(cls, cfg: DictConfig) -> None:
        super().check_settings(cfg)
        method = cfg.method
        cls._check_values(method)
        shapes = {part: _batch_shape(cfg.data[part]) for part in ("source", "target")}
        if None not in shapes.values() and shapes["source"] != shapes["target"]:
            raise DadaError(f"method {method.name}: ClassMix pastes source pixels onto target images, "
                            f"so both "
                            f"batches need one shape; data.source gives {shapes['source']} and data.target "
                            f"{shapes['target']} (batch, H, W). Set data.source.size / augment.crop and "
                            f"batch_size to the target's, or use the dacs_paper preset "
                            f"(512x512 crops of both)")

    def __init__(self, cfg: DictConfig, model: Segmenter, device: torch.device):
        self._check_values(cfg.method)  # also when the config was not built by load_config
        super().__init__(cfg, model, device)
        self.extra_modules["teacher"] = st.make_teacher(model).to(device)
        self.streams = st.Streams(cfg.seed)
        self.ema_steps = 0  # EMA updates done (a_i's i)
        self.pl_weight = float("nan")  # the last pseudo-label weight q
        self.imnet = None  # DAFormer's frozen ImageNet backbone (feature distance), when fd_lambda > 0
        method = cfg.method
        if method.fd_lambda > 0:
            pretrained = cfg.model.pretrained
            if pretrained is None or str(pretrained).lower() == "none":
                raise DadaError("method.fd_lambda > 0 keeps the features near the ImageNet backbone's, but "
                                "model.pretrained is not set: give ImageNet weights "
                                "or set method.fd_lambda=0")
            names = class_set(cfg.model.num_classes).names
            unknown = [c for c in method.fd_classes if c not in names]
            self.fd_ids = [names.index(c) for c in method.fd_classes if c in names]
            if not self.fd_ids:
                raise DadaError(f"method.fd_classes {list(method.fd_classes)} names none of this class set's "
                                f"classes ({', '.join(names)})")
            self.fd_ignored = unknown  # thing classes this class set does not have (e.g. truck, train)
            self.imnet = copy.deepcopy(model.backbone).eval().requires_grad_(False)  # the initial weights
        self.preprocess = cfg.data.preprocess
        self.images: dict[str, torch.Tensor] = {}

    @property
    def teacher(self) -> nn.Module:
        return self.extra_modules["teacher"]

    # ------------------------------------------------------------------------------------- the step
    def train_step(self, source: dict, target: dict, iteration: int) -> dict[str, torch.Tensor]:
        method = self.cfg.method
        if not method.ema_after_step and self.ema_steps > 0:  # DAFormer: a_i at the start of i > 0
            st.ema_update_(self.teacher, self.model, self.ema_steps, method.alpha)
        self.start_step(iteration)
        loss: dict[str, torch.Tensor] = {}
        with st.captured_output(self.model.backbone) if self.imnet is not None else nullcontext({}) as box:
            seg_src, depth_src = forward_upsampled(self.model, source["image"])
        objective = self.source_terms(source, seg_src, depth_src, loss)
        if self.imnet is not None:  # DAFormer's ImageNet feature distance on the source image
            loss["feat_dist"] = self.feature_distance(source["image"], source["label"], box["out"])
            objective = objective + method.fd_lambda * loss["feat_dist"]

        mixed = self.mix(source, target)
        seg_mix, depth_mix = forward_upsampled(self.model, mixed["image"])
        mixed["weight"] = self.mix_weight(mixed, depth_mix)
        loss["seg_mix"] = weighted_ce(seg_mix, mixed["label"], mixed["weight"])
        objective = objective + method.lambda_mix * loss["seg_mix"]
        objective = objective + self.mix_terms(mixed, seg_mix, depth_mix, loss)
        objective = objective + self.target_terms(target, loss)
        objective.backward()
        self.after_backward(seg_src, depth_src, loss)

        self.remember(image_source=source["image"], seg_source=seg_src, depth_source=depth_src,
                      image_target=target["image"], seg_target=mixed["teacher_seg"],
                      depth_target=mixed.get("teacher_depth"))
        if self.keep_outputs:
            self.images = {"mix/image": mixed["image"][0].detach(), "mix/label": mixed["label"][0].detach(),
                           "mix/mask": mixed["mask"][0].detach().float(),
                           "mix/pseudo_weight": mixed["weight"][0].detach()}
        detached = self.finish_step(loss, iteration)
        if method.ema_after_step:
            st.ema_update_(self.teacher, self.model, self.ema_steps, method.alpha)
        self.ema_steps += 1
        return detached

    # ------------------------------------------------------------------- rare-class sampling (RCS)
    def prepare(self, datasets: dict, run_dir) -> None:
        """With ``rcs_temperature``: the source's per-image class pixel counts, read once and cached in
        ``run_dir/rcs_stats.json`` (keyed by the dataset's size and the class count)."""
        super().prepare(datasets, run_dir)
        self.rcs = None
        if self.cfg.method.rcs_temperature is None:
            return
        self.rcs = rare_class_statistics(datasets["source"], self.cfg.model.num_classes,
                                         Path(run_dir) / "rcs_stats.json")

    def source_order(self):
        method = self.cfg.method
        if method.rcs_temperature is None:
            return None
        if getattr(self, "rcs", None) is None:
            raise DadaError("rare-class sampling has no source statistics: the engine calls prepare() first")
        probabilities, candidates = rcs_distribution(self.rcs, method.rcs_temperature, method.rcs_min_pixels)
        seed, length = int(self.cfg.seed), len(self.rcs["counts"])

        def order(epoch: int) -> np.ndarray:  # a function of the epoch alone: a resumed run draws the same
            rng = np.random.default_rng([seed, 7919, epoch])
            classes = rng.choice(len(probabilities), size=length, p=probabilities)
            return np.array([candidates[c][rng.integers(len(candidates[c]))] for c in classes])

        return order

    def start_step(self, iteration: int) -> None:
        """Zero the gradients, poly learning rates, then DAFormer's linear warm-up when set."""
        super().start_step(iteration)
        warmup = self.cfg.method.warmup_iters
        if warmup > 0 and iteration < warmup:
            factor = 1.0 - (1.0 - iteration / warmup) * (1.0 - self.cfg.method.warmup_ratio)
            for optimizer in self.optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] *= factor

    def feature_distance(self, image: torch.Tensor, label: torch.Tensor,
                         features: torch.Tensor) -> torch.Tensor:
        """DAFormer's ``calc_feat_dist``: the mean L2 distance between the student's and the frozen ImageNet
        backbone's last features over the cells whose downscaled label (``downscale_label_ratio``: the
        majority class when it covers ≥ fd_scale_min_ratio of the cell) is a thing class."""
        with torch.no_grad():
            imnet = self.imnet(image)
        scale = label.shape[-1] // features.shape[-1]
        cells = st.downscale_label_ratio(label, scale, self.cfg.method.fd_scale_min_ratio,
                                         self.cfg.model.num_classes)
        mask = torch.isin(cells, torch.tensor(self.fd_ids, device=cells.device))
        distance = torch.norm(features - imnet, dim=1, p=2)
        if not mask.any():  # no thing cell in the batch: the official mean over an empty set is NaN
            return distance.sum() * 0.0
        return distance[mask].mean()

    def source_terms(self, source: dict, seg: torch.Tensor, depth: torch.Tensor | None,
                     loss: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_src (CrossEntropy2d: the mean over labelled pixels). ``dast`` adds the source berHu."""
        return self.source_objective(source, seg, depth, loss, depth_supervision=False)

    def mix_weight(self, mixed: dict, depth: torch.Tensor | None) -> torch.Tensor:
        """The per-pixel weight of the pseudo-label loss, given the student's depth on the mixed image
        (DACS: the mixed weight map as is; ``dast``: optionally CorDA's depth-discrepancy weighting)."""
        return mixed["weight"]

    def mix_terms(self, mixed: dict, seg: torch.Tensor, depth: torch.Tensor | None,
                  loss: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """Extra terms on the mixed image (none in DACS)."""
        return 0.0

    def target_terms(self, target: dict, loss: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """Extra terms on the student's un-mixed target output (none in DACS; ``dast``'s optional
        adversarial term)."""
        return 0.0

    def after_backward(self, seg_src: torch.Tensor, depth_src: torch.Tensor | None,
                       loss: dict[str, torch.Tensor]) -> None:
        """After the student's backward, before the optimizer steps (``dast``: the discriminators' step)."""

    @torch.no_grad()
    def teacher_predict(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The teacher on the un-augmented target, in the official mode (train, Dropout off)."""
        st.teacher_mode_(self.teacher)
        return forward_upsampled(self.teacher, image)

    def mix_masks(self, source: dict, target: dict, teacher_depth: torch.Tensor | None) -> torch.Tensor:
        """N×H×W bool: which pixels come from the source (ClassMix; ``dast`` orders them by depth)."""
        method = self.cfg.method
        return st.class_mix_masks(source["label"], self.streams["classes"],
                                  batch_classes=method.batch_classes,
                                  include_ignore=method.mix_ignore)

    def mix(self, source: dict, target: dict) -> dict[str, torch.Tensor]:
        """Pseudo-labels, ClassMix, then jitter and blur (trainUDA.py L414-479)."""
        method = self.cfg.method
        if source["image"].shape != target["image"].shape:
            raise DadaError(f"DACS mixes source and target pixel by pixel: the batches must have the same "
                            f"shape, got source {tuple(source['image'].shape)} and target "
                            f"{tuple(target['image'].shape)}; set data.source.size and batch_size equal to "
                            f"data.target's")
        teacher_seg, teacher_depth = self.teacher_predict(target["image"])
        pseudo, _, weight = st.pseudo_labels(teacher_seg, method.pseudo_threshold)
        self.pl_weight = weight
        weights = st.pseudo_weight_map(weight, tuple(pseudo.shape), pseudo.device, method.pl_ignore_top,
                                       method.pl_ignore_bottom)
        masks = self.mix_masks(source, target, teacher_depth)
        # one jitter and one blur decision per iteration for the batch (trainUDA.py L445-452)
        jitter_u = self.streams.uniform("jitter") if method.color_jitter else 0.0
        blur_u = self.streams.uniform("blur") if method.blur else 0.0
        images, labels, pixel_weights = [], [], []
        for i in range(source["image"].shape[0]):
            image = st.one_mix(masks[i], source["image"][i], target["image"][i])[None]
            if jitter_u > method.jitter_skip:  # transformsgpu.colorJitter, per image
                params = st.sample_jitter(method.jitter_strength, self.streams["jitter"])
                image = st.from_unit(st.color_jitter(st.to_unit(image, self.preprocess), params),
                                     self.preprocess)
            if blur_u > 0.5:  # transformsgpu.gaussian_blur, σ per image
                image = st.gaussian_blur(image, self.streams.uniform("blur", *method.blur_sigma))
            images.append(image)
            labels.append(st.one_mix(masks[i], source["label"][i], pseudo[i]))
            pixel_weights.append(st.one_mix(masks[i], torch.ones_like(weights[i]), weights[i]))
        return {"image": torch.cat(images), "label": torch.stack(labels),
                "weight": torch.stack(pixel_weights),
                "mask": masks, "pseudo": pseudo, "teacher_seg": teacher_seg, "teacher_depth": teacher_depth}

    # ------------------------------------------------------------------------ engine-facing extras
    def evaluation_network(self) -> nn.Module:
        return self.teacher if self.cfg.method.eval_model == "teacher" else self.model

    def log_scalars(self) -> dict[str, float]:
        return {"pseudo_weight": self.pl_weight}

    def log_images(self) -> dict[str, torch.Tensor]:
        return dict(self.images)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["self_training"] = {"ema_steps": self.ema_steps, "streams": self.streams.state_dict(),
                                  "pl_weight": self.pl_weight}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        extra = state.get("self_training")
        if extra is None:
            raise DadaError("the checkpoint has no self-training state (teacher step, random streams): it "
                            "was not written by this method; resume with the method it was trained with")
        self.ema_steps = int(extra["ema_steps"])
        self.streams.load_state_dict(extra["streams"])
        self.pl_weight = float(extra["pl_weight"])


def rare_class_statistics(dataset, num_classes: int, cache: Path) -> dict:
    """``{"counts": [[pixels of class c in image i] ...], "num_classes"}`` of a labelled dataset, read once
    (cached in ``cache`` as JSON for this dataset length and class count)."""
    key = {"length": len(dataset), "num_classes": int(num_classes)}
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            return saved
    counts = []
    for index in range(len(dataset)):
        label = torch.as_tensor(dataset[index]["label"]).reshape(-1).long()
        label = label[(label >= 0) & (label < num_classes)]
        counts.append(torch.bincount(label, minlength=num_classes).tolist())
    stats = {"key": key, "counts": counts, "num_classes": int(num_classes)}
    write_json(cache, stats)
    return stats


def rcs_distribution(stats: dict, temperature: float, min_pixels: int) -> tuple[np.ndarray, list[list[int]]]:
    """DAFormer's RCS (``get_rcs_class_probs``): class frequencies f_c over the source pixels,
    P(c) = softmax((1 − f_c)/T), and per class the images holding more than ``min_pixels`` of it. A class
    that no image holds enough of is left out (DAFormer would fail drawing from its empty list)."""
    counts = np.asarray(stats["counts"], dtype=np.float64)
    freq = counts.sum(axis=0) / max(counts.sum(), 1.0)
    # ">" as DAFormer
    candidates = [np.flatnonzero(counts[:, c] > min_pixels).tolist() for c in range(counts.shape[1])]
    usable = np.array([len(c) > 0 for c in candidates])
    if not usable.any():
        raise DadaError(f"rare-class sampling: no source image holds "
                        f"method.rcs_min_pixels={min_pixels} pixels "
                        f"of any class; lower it (DAFormer's 3000 is for 1280×760 images)")
    logits = np.where(usable, (1.0 - freq) / temperature, -np.inf)
    probabilities = np.exp(logits - logits[usable].max())
    probabilities /= probabilities.sum()
    return probabilities, candidates
