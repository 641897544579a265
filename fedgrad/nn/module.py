"""`Module`, `Parameter` and `Sequential`: the containers every model is built from.

As in PyTorch's ``module.py``, assigning a :class:`Parameter` or a :class:`Module` to an
attribute registers it, so ``parameters()`` and ``state_dict()`` need no manual bookkeeping.
Registered values stay ordinary attributes too, so ``forward`` reads them at plain attribute
speed. ``state_dict()`` is a flat ``name -> numpy array`` mapping of host copies: exactly what
the federation ships, checkpoints and averages.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from fedgrad import backend
from fedgrad.errors import FedgradError
from fedgrad.tensor import Tensor


class StateDictError(FedgradError):
    """A state dict whose names or shapes do not match the model it is loaded into."""


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module: it always requires grad."""

    __slots__ = ()

    def __init__(self, data: Any, dtype: npt.DTypeLike | None = None, device: str | None = None) -> None:
        super().__init__(data, requires_grad=True, dtype=dtype, device=device)


class Module:
    """Base class of layers and models. Subclasses call ``super().__init__()`` first and
    define ``forward``; calling the module calls ``forward``."""

    training: bool
    _parameters: dict[str, Parameter]
    _modules: dict[str, Module]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            parameters, modules = self._parameters, self._modules
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before assigning attributes"
            ) from None
        parameters.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            parameters[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first."""
        yield self
        for child in self._modules.values():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs; a parameter shared by two modules appears once."""
        seen: set[int] = set()
        for name, param in self._named_parameters(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _named_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, param in self._parameters.items():
            yield prefix + name, param
        for name, child in self._modules.items():
            yield from child._named_parameters(f"{prefix}{name}.")

    def parameters(self) -> Iterator[Parameter]:
        for _, param in self.named_parameters():
            yield param

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        """Host numpy copies of every parameter, by dotted name (copies even on CPU, so later
        training steps never change a state dict already handed out)."""
        return {name: np.array(backend.to_host(p.data), copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy values into the existing parameters (their dtype and device are kept, so
        optimizers holding them stay valid). ``strict`` requires exactly the same names."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if strict and (missing or unexpected):
            raise StateDictError(
                f"state dict does not match {type(self).__name__}: missing {missing}, unexpected {unexpected}"
            )
        for name, param in params.items():
            if name not in state:
                continue
            value = state[name]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != param.data.shape:
                raise StateDictError(
                    f"state dict entry {name!r} has shape {tuple(value.shape)}, the model expects {param.data.shape}"
                )
            param.data[...] = backend.to_device(value, param.device).astype(param.data.dtype, copy=False)

    # ------------------------------------------------------------------ modes and devices
    def train(self, mode: bool = True) -> Self:
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Self:
        return self.train(False)

    def to(self, device: str) -> Self:
        """Move every parameter (and its gradient) to ``device`` in place; returns ``self``."""
        target = backend.parse_device(device)
        for param in self.parameters():
            param.data = backend.to_device(param.data, target)
            if param.grad is not None:
                param.grad = Tensor(backend.to_device(param.grad.data, target), dtype=param.grad.dtype)
        return self

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


class Sequential(Module):
    """Modules applied one after another; children are named ``"0"``, ``"1"``, ..."""

    def __init__(self, *layers: Module):
        super().__init__()
        for index, layer in enumerate(layers):
            setattr(self, str(index), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def forward(self, x: Any) -> Any:
        for layer in self._modules.values():
            x = layer(x)
        return x


class ModuleList(Module):
    """A list of modules registered under the names ``"0"``, ``"1"``, ...; no ``forward``."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]
