"""Convolution + ReLU fusion for the torch backend's converted graphs on a GPU (cuDNN's fused calls)."""

from __future__ import annotations

import operator

import torch


class ConvReLU(torch.nn.Module):
    """relu(conv(x) + z) or relu(conv(x)) as one cuDNN call on a GPU, its bias, sum and ReLU done in the
    convolution's epilogue instead of as separate passes over the activations; plain PyTorch elsewhere, and
    where z is not exactly the convolution's output shape and type (the graph's add would broadcast or cast it)."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.conv, self.unfused = conv, ""  # unfused: why cuDNN refused this one (it then runs as before)
        self.took = False  # whether a call ran fused (the engine's log counts them after its warm-up run)

    def _takes(self, x: torch.Tensor, z: torch.Tensor | None) -> bool:
        """Whether the fused call computes what the graph did: on a GPU, z (if any) as the convolution's output."""
        if not x.is_cuda or self.unfused:
            return False
        if z is None:
            return True
        c = self.conv
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride)]
        return z.dtype == x.dtype and tuple(z.shape) == (x.shape[0], c.out_channels, *size)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        c = self.conv
        if self._takes(x, z):
            try:
                out = (torch.ops.aten.cudnn_convolution_relu(x, c.weight, c.bias, c.stride, c.padding, c.dilation,
                                                             c.groups) if z is None else
                       torch.ops.aten.cudnn_convolution_add_relu(x, c.weight, z, 1.0, c.bias, c.stride, c.padding,
                                                                 c.dilation, c.groups))
                self.took = True
                return out
            except RuntimeError as exc:  # no fused kernel for this layer here: the engine's warm-up run finds out
                self.unfused = str(exc).splitlines()[0] or type(exc).__name__
        y = c(x)
        return torch.relu(y if z is None else y + z)


def fuse_conv_relu(net: torch.fx.GraphModule) -> int:
    """Rewrite Conv2d → ReLU and Conv2d → Add → ReLU chains of a converted graph as `ConvReLU` calls; returns
    how many. Only chains whose intermediate results have no other use are taken.

    Why: in PyTorch's eager kernels each convolution's bias is a separate broadcast add over its channels-last
    output, a generic (not vectorised) kernel that took the largest share of ResNet-50's GPU time, with ReLUs and
    residual adds more (docs/dev/decisions/0004)."""
    modules = dict(net.named_modules())

    def module(node: torch.fx.Node) -> torch.nn.Module | None:
        return modules.get(node.target) if node.op == "call_module" else None

    def conv(node: object) -> bool:
        m = module(node) if isinstance(node, torch.fx.Node) else None
        return (isinstance(m, torch.nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str)
                and len(node.args) == 1 and not node.kwargs and len(node.users) == 1)

    def add(node: torch.fx.Node) -> bool:  # onnx2torch's Add, or torch's
        m = module(node)
        return len(node.users) == 1 and len(node.args) == 2 and not node.kwargs and (
            node.op == "call_function" and node.target in (operator.add, torch.add)
            or m is not None and getattr(m, "math_op_function", None) is torch.add
            and getattr(m, "broadcast", None) is None)

    fused = 0
    for relu in list(net.graph.nodes):
        if not (isinstance(module(relu), torch.nn.ReLU) or relu.op == "call_function"
                and relu.target in (torch.relu, torch.nn.functional.relu)) or len(relu.args) != 1:
            continue
        src, z = relu.args[0], None
        if not isinstance(src, torch.fx.Node):
            continue
        chain = [relu, src]
        if add(src):
            first, second = src.args
            if not conv(first):
                first, second = second, first
            src, z = (first, second) if conv(first) and isinstance(second, torch.fx.Node) else (None, None)
            chain.append(src)
        if not conv(src):
            continue
        name = f"fused_{fused}"
        net.add_submodule(name, ConvReLU(modules[src.target]))
        with net.graph.inserting_before(relu):  # after both inputs: z may come after the convolution
            call = net.graph.call_module(name, (src.args[0], *([z] if z is not None else [])))
        relu.replace_all_uses_with(call)
        for node in chain:  # each one's only user is erased before it
            net.graph.erase_node(node)
        fused += 1
    net.graph.lint()
    net.delete_all_unused_submodules()
    net.recompile()
    return fused
