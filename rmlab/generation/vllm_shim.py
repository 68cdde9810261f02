"""Installed into the vLLM environment by `make vllm` (as `rmlab_vllm_shim.py`, with a `.pth` file that imports it
in every process of that environment). It imports nothing of rmlab and nothing heavy, and does nothing where
torchvision works.

PyPI's torchvision is built against the CUDA torch and does not load beside torch 2.13.0+cpu (`operator
torchvision::nms does not exist`: its `_C.so` needs libtorch_cuda.so), so `make vllm` removes it. transformers then
falls back to its PIL image processors, except in two places vLLM's Qwen-VL models reach:

- vLLM imports `smart_resize` from the torchvision image processor's module: that module is served from the PIL
  one (the same `smart_resize`; the PIL class under the torchvision class's name);
- the stock Qwen-VL processors build a video processor, which needs torchvision: as rmlab's own image-only
  processors (rmlab.models.processors), they are loaded without it (a video request is refused; rmlab sends none).
"""

import functools
import importlib
import importlib.abc
import importlib.util
import sys
from typing import TypedDict

_SERVED = {  # module -> (module it is served from, {name: name in that module})
    "transformers.models.qwen2_vl.image_processing_qwen2_vl": (
        "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl",
        {"Qwen2VLImageProcessor": "Qwen2VLImageProcessorPil"},
    ),
}
_IMAGE_ONLY = {  # module -> processor classes loaded without their video processor
    "transformers.models.qwen2_vl.processing_qwen2_vl": "Qwen2VLProcessor",
    "transformers.models.qwen2_5_vl.processing_qwen2_5_vl": "Qwen2_5_VLProcessor",
}


def _torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        return False
    return True


class _Served(importlib.abc.Loader):
    def __init__(self, source: str, aliases: dict):
        self.source, self.aliases = source, aliases

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        real = importlib.import_module(self.source)
        module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        for name, target in self.aliases.items():
            setattr(module, name, getattr(real, target))


class _ImageOnly(importlib.abc.Loader):
    def __init__(self, loader, class_name: str):
        self.loader, self.class_name = loader, class_name

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        cls = getattr(module, self.class_name)
        attributes, init = cls.get_attributes.__func__, cls.__init__

        @functools.wraps(init)  # the signature stays the one its sub-processors are read from
        def image_only_init(processor, *args, **kwargs):
            init(processor, *args, **kwargs)
            processor.video_processor = _NoVideo()

        cls.get_attributes = classmethod(lambda c: [a for a in attributes(c) if a != "video_processor"])
        cls.__init__ = image_only_init


class _NoVideoKwargs(TypedDict, total=False):
    """No video option."""


class _NoVideo(dict):  # a dict: the processor writes itself as JSON ({} here)
    """Where the video processor would be: it takes no options and refuses videos."""

    valid_kwargs = _NoVideoKwargs
    merge_size = 2

    def __call__(self, *args, **kwargs):
        raise ValueError("this vLLM environment has no torchvision: videos are not supported")


class _Finder(importlib.abc.MetaPathFinder):
    works: bool | None = None

    def find_spec(self, fullname, path, target=None):
        if fullname not in _SERVED and fullname not in _IMAGE_ONLY:
            return None
        if _Finder.works is None:
            _Finder.works = _torchvision_works()
        if _Finder.works:
            return None
        if fullname in _SERVED:
            return importlib.util.spec_from_loader(fullname, _Served(*_SERVED[fullname]))
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _ImageOnly(spec.loader, _IMAGE_ONLY[fullname])
                return spec
        return None


if not any(type(f).__name__ == "_Finder" and type(f).__module__ == __name__ for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
