"""The valid choices of the config keys that name a code path, in a module that imports nothing: the CLI checks
a command line against them before torch loads (`cnnbench.config_schema`); code that needs a tuple (to dispatch or
to list the choices) imports it from here. The evaluation protocol choices live in `cnnbench.evaluation.choices`."""

OPTIMIZERS = ("sgd", "rmsprop", "adamw", "rmsprop_tf")                                # optimizer.name
SCHEDULES = ("onecycle", "cosine", "multistep", "exponential", "poly", "plateau", "constant")  # schedule.name
AUGMENTATIONS = ("none", "pad_crop_flip", "cifar", "random_resized_crop", "scale_jitter", "resnet_imagenet",
                 "vgg", "googlenet", "inception", "efficientnet")                      # augmentation.name
NONFINITE_MODES = ("stop", "skip")                                                   # loss.on_nonfinite
WARMUP_ENABLED = (True, False, "auto")                                               # conditional_warmup.enabled
ON_BAD_IMAGE = ("skip", "error")                                                     # data.on_bad_image
MEAN_MODES = ("channel", "pixel")                                                    # data.mean_mode
# data.decode, for file-backed data: opencv = the fast path (cnnbench.data.fastpath), pil = PIL decode + the
# albumentations pipeline on the whole image, gpu = batched nvJPEG decode and the crop/flip/colour ops on the
# GPU (cnnbench.data.gpu_decode)
DECODES = ("opencv", "pil", "gpu")
# data.photometric: cpu = in the loader workers, device = drawn in the workers and run on the batch after its
# transfer (cnnbench.data.photometric; the fast path only)
PHOTOMETRIC = ("cpu", "device")
LOGGERS = ("wandb", "csv", "none")  # logger.name, besides run_dir/metrics.csv which is always written
STRATEGIES = ("auto", "ddp")        # hardware.strategy
STYLIZE_SOLVERS = ("lbfgs", "adam")                                                  # stylize.solver
STYLIZE_POOLS = ("max", "avg")                                                       # stylize.pool
STYLIZE_INITS = ("content", "noise")                                                 # stylize.init
EXPORT_FORMATS = ("onnx", "torchscript")                                             # export: format
WEIGHT_SOURCES = ("torchvision",)                                                    # import-weights: source
BENCHMARK_MODES = ("train", "infer", "data", "eval")                                 # benchmark.mode (or a list)
BENCHMARK_SOURCES = ("memory", "jpeg")                                               # benchmark.sources
# trainer.precision of cnnbench benchmark: fp32 and Lightning's two autocast precisions, with Lightning's short
# aliases (cnnbench.benchmarking.precision runs them through Lightning's MixedPrecision plugin)
BENCHMARK_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16")

__all__ = ["AUGMENTATIONS", "BENCHMARK_MODES", "BENCHMARK_PRECISIONS", "BENCHMARK_SOURCES", "DECODES", "EXPORT_FORMATS", "WEIGHT_SOURCES", "LOGGERS", "MEAN_MODES", "NONFINITE_MODES", "ON_BAD_IMAGE", "OPTIMIZERS",
           "PHOTOMETRIC", "SCHEDULES", "STRATEGIES", "STYLIZE_INITS", "STYLIZE_POOLS", "STYLIZE_SOLVERS",
           "WARMUP_ENABLED"]
