"""The one registry of named experiments and profiles: plain data, read by lib.study.resolve.

Profiles change sizes and epochs, never code paths: `smoke` (seconds, for tests), `sample` (the embedded
sample on a CPU, the default), `cpu-full` (the real data set on a CPU overnight: 64 px images and a few epochs,
docs/cpu-full.md) and `full` (the real data set on a GPU with the reference settings).
"""
import os
from pathlib import Path

from lib import data


# Generated files go under results/ and figures/ of the project, or of $MINIPLACES_OUTPUT when set.
OUTPUT_ROOT = Path(os.environ.get("MINIPLACES_OUTPUT", data.PROJECT_ROOT))


RESULTS_DIR = OUTPUT_ROOT / "results"


# The original harness (REFERENCE.md): SGD momentum 0.9, lr 0.1, wd 1e-4, 5 warmup epochs, cosine to 0.
# tune_split=True: a recipe search's probe, trained without the tune split of the training images and validated on
# it (lib.data.tune); the Findings refuse such runs.
# data_on_device="auto": training batches from the GPU when the split fits there (lib.training.loaders).
# compile="auto": torch.compile where the run pays its compilation back, measured at its start (lib.training.compilation;
# on a 2-core AVX2 CPU no model's compiled step was faster: docs/benchmarks.md).
TRAIN_DEFAULTS = dict(
    epochs=60, batch_size=256, val_batch_size=100, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    warmup_epochs=5, grad_clip=0.0, label_smoothing=0.0, seed=0, amp="auto", channels_last=False,
    image_size=128, train_images=None, val_images=None, log_every=20, num_workers=0, adversarial=None,
    init_from=None, train_batches=None, val_batches=None, data_on_device="auto", compile="auto", tune_split=False,
)

# Settings that choose how a run computes, not what: where batches are gathered, how many loader processes
# decode them, and whether torch.compile fuses the model's kernels. They are left out of a run's identity (lib.study.runs), so a run trained with the data on a GPU is
# re-used by a CPU render of the same study. A setting absent from an earlier version's config.json counts at its
# TRAIN_DEFAULTS value, the value that reproduces that version's behaviour.
EXECUTION_SETTINGS = ("num_workers", "data_on_device", "compile")


PROFILES = {
    "smoke": dict(image_size=32, epochs=2, batch_size=16, val_batch_size=32, train_images=96, val_images=48,
                  warmup_epochs=0.5, log_every=1),
    "sample": dict(image_size=64, epochs=8, batch_size=64, val_batch_size=100, warmup_epochs=1, log_every=10),
    # The reference's recipe (batch 256, SGD lr 0.1, cosine) on all the data at 64 px for 4 epochs.
    "cpu-full": dict(image_size=64, epochs=4, warmup_epochs=1),
    "full": dict(num_workers=8),
}


# What a report of each profile is, said at its top (lib.report.build).
PROFILE_SCOPES = {
    "smoke": "a test of the pipeline on a few images of the embedded sample; its numbers are not results",
    "sample": "the study on the embedded sample of the data set, at 64 x 64 pixels for a few epochs, on a CPU",
    "cpu-full": "a reduced-scale reproduction on the full data set: every image, at 64 x 64 pixels instead of "
                "128 x 128 and for a few epochs instead of the reference's 60 to 90, sized for a CPU overnight",
    "full": "the reproduction at the reference's scale: the full data set at 128 x 128 pixels with the "
            "reference's epochs, on a GPU",
}


# A dry run executes the whole study with a profile's data, sizes and models but caps the work: at most `epochs`
# epochs of at most `train_batches` optimizer steps, evaluations over `val_batches` batches, attacks on
# `attack_images` images, and cost measurements (lib.report.measurements) timing one step on `measure_batch` images.
# Its runs live in <profile>-dryrun directories, never re-used as real results.
# Pretrained weights are used when available, else the run starts from scratch and says so (pretrained_source),
# so that a dry run also runs offline.
DRY_RUN = dict(epochs=1, train_batches=2, val_batches=2, attack_images=8, measure_batch=4)


# PGD used to craft training samples for AdvSimpleNet (pixel units): the reference's (REFERENCE.md, section 4).
ADVERSARIAL_TRAINING = dict(num_steps=4, step_size=2 / 255, epsilon=8 / 255)


# The attacks of notebooks 03 and 04 (`attack_settings` resolves them to pixel units, with a notebook's
# overrides). default: the original harness's PGD-10, step 0.01, epsilon 0.1 in normalised units; epsilons: the
# robustness curve's, pixel units, each a PGD-10 of step epsilon / 10 like the default; grid_steps x grid_scales:
# PGD with the default's step size, that many steps, epsilon = scale x the default's. images: val images attacked
# per profile (an evenly spaced subset, the same for every model; None: all of them).
ATTACKS = dict(
    default=dict(num_steps=10, step_size=0.01, epsilon=0.1),
    epsilons=(1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    grid_steps=(5, 10, 20), grid_scales=(0.25, 0.5, 1, 2),
    images={"smoke": 16, "sample": None, "cpu-full": None, "full": None},
)


# The stronger attacks beside the reference's PGD (torchattacks' implementations of AutoAttack's components,
# Croce & Hein 2020), at the default attack's epsilon: untargeted APGD on the cross-entropy, and targeted APGD on
# the DLR loss, aimed in turn at each of the `target_classes` classes scored highest after the label. steps and
# restarts per profile: the full profile's are AutoAttack's standard (100 steps, one restart, 9 targets); the
# sample's fit the CPU report's budget (timed in benchmarks/attacks.py). images: val images attacked per profile
# (evenly spaced; None: all).
STRONG_ATTACKS = dict(
    steps={"smoke": 5, "sample": 25, "cpu-full": 25, "full": 100},
    restarts={"smoke": 1, "sample": 1, "cpu-full": 1, "full": 1}, target_classes=9,
    images={"smoke": 16, "sample": 500, "cpu-full": 1000, "full": None},
)


# Training seeds per experiment behind a comparative finding (SEEDED): seed, seed + 1, ... each a run of its own.
# A profile's default number; the `seeds` parameter of a study changes it.
SEEDS = {"smoke": 1, "sample": 1, "cpu-full": 1, "full": 3}
SEEDED = ("simplenet", "improvednet", "resnet18", "vit", "vit_global", "advsimplenet")
# The experiments the notebooks train (improvednet_table, the reference table's settings, is trained on request).
REPORTED = ("simplenet", "simplenet_custom", "improvednet", "resnet18", "vit", "vit_global", "advsimplenet")


# SimpleNet has no BatchNorm: at lr 0.1 it stays near chance for the sample's first epochs, 0.05 learns at once.
SIMPLENET_SAMPLE = dict(epochs=8, lr=0.05)


# From scratch, PGD training stays at chance for far longer than the sample's budget (about 75 s per epoch on
# 2 CPU cores); on the sample AdvSimpleNet is therefore fine-tuned adversarially from SimpleNet's weights.
ADV_SAMPLE = dict(epochs=3, lr=0.02, warmup_epochs=0, init_from="simplenet")


# cpu-full (docs/cpu-full.md): fewer epochs where an epoch costs several of SimpleNet's (training steps measured
# side by side on a 2-core AVX-512 CPU at 64 px: ResNet-18 about 8x, the ViTs about 2-2.5x, the custom convolution
# about 1.1x SimpleNet's; a PGD-4 training step about 4-5 plain ones: AdvSimpleNet is fine-tuned adversarially
# from SimpleNet, as on the sample).
# AdvSimpleNet: one epoch at lr 0.01, crafting at the reference's epsilon (8/255, step 2/255) with an epsilon warm-up
# over that epoch, the probe lib.study.recipe_search chose on the tune split (never on validation images): tune top-1
# 11.8% clean and 10.4% under PGD-10 at 5.76/255, against 6.9% for the half-epoch warm-up and for 4/255 without one
# (n = 1,000 each; docs/cpu-full.md has the probe table).
ADV_CPU_FULL_CRAFTING = dict(ADVERSARIAL_TRAINING, ramp_epochs=1)
CUSTOM_CPU_FULL = dict(epochs=2)
RESNET_CPU_FULL = dict(epochs=1, warmup_epochs=0.25)
ADV_CPU_FULL = dict(ADV_SAMPLE, epochs=1, lr=0.01, adversarial=ADV_CPU_FULL_CRAFTING)


# CNNs train in channels_last memory format, the layout oneDNN and cuDNN convolutions prefer (measured on a 2-core
# AVX2 CPU: a training step of SimpleNet 1.5x, ImprovedNet 1.3x, ResNet-18 1.2x faster at 64 px, batch 64).
CNN_TRAIN = dict(channels_last=True)


VIT_TRAIN = dict(optimizer="adamw", lr=0.01, weight_decay=0.05, grad_clip=1.0)


# Smaller inputs keep the reference's 8x8 token grid (four 4x4 windows) through a smaller patch; the CPU profiles
# also narrow the tokens (192 -> 64) so that both ViTs train within a CPU report's time budget.
VIT_64PX = dict(patch_size=8, embed_dim=64)  # 64 px / patch 8
VIT_SAMPLE = dict(epochs=6, model_kwargs=VIT_64PX)
VIT_CPU_FULL = dict(epochs=3, model_kwargs=VIT_64PX)


VIT_SMOKE = dict(model_kwargs=dict(patch_size=4, embed_dim=64))  # 32 px / patch 4


EXPERIMENTS = {
    "simplenet": dict(
        title="SimpleNet (nn.Conv2d)", model="simplenet", model_kwargs=dict(conv="native"), train=CNN_TRAIN,
        full=dict(epochs=60), sample=SIMPLENET_SAMPLE),
    "simplenet_custom": dict(
        title="SimpleNet (custom conv)", model="simplenet", model_kwargs=dict(conv="custom"), train=CNN_TRAIN,
        full=dict(epochs=10), sample=dict(SIMPLENET_SAMPLE, epochs=3), **{"cpu-full": CUSTOM_CPU_FULL}),
    # REFERENCE.md: the improved CNN's curve peaks near lr 0.1 while its table lists lr 0.01 / wd 0.05;
    # `improvednet` follows the curve, `improvednet_table` the table.
    "improvednet": dict(
        title="ImprovedNet", model="improvednet", model_kwargs=dict(conv="native"), train=CNN_TRAIN,
        full=dict(epochs=60), sample=dict(epochs=5)),
    "improvednet_table": dict(
        title="ImprovedNet (lr 0.01, wd 0.05)", model="improvednet", model_kwargs=dict(conv="native"),
        train=dict(CNN_TRAIN, lr=0.01, weight_decay=0.05), full=dict(epochs=60)),
    "resnet18": dict(
        title="ResNet-18", model="resnet18", model_kwargs=dict(pretrained="auto"), train=CNN_TRAIN,
        full=dict(epochs=60, model_kwargs=dict(pretrained=True)), sample=dict(epochs=3),
        **{"cpu-full": RESNET_CPU_FULL}),
    "vit": dict(
        title="ViT (window attention)", model="vit", train=VIT_TRAIN, full=dict(epochs=90), sample=VIT_SAMPLE,
        smoke=VIT_SMOKE, **{"cpu-full": VIT_CPU_FULL}),
    "vit_global": dict(
        title="ViT (global attention)", model="vit", model_kwargs=dict(window_block_indexes=()),
        train=VIT_TRAIN, full=dict(epochs=90), sample=VIT_SAMPLE, smoke=VIT_SMOKE, **{"cpu-full": VIT_CPU_FULL}),
    "advsimplenet": dict(
        title="AdvSimpleNet (PGD training)", model="simplenet", model_kwargs=dict(conv="native"),
        train=dict(CNN_TRAIN, adversarial=ADVERSARIAL_TRAINING), full=dict(epochs=70), sample=ADV_SAMPLE,
        **{"cpu-full": ADV_CPU_FULL}),
}
