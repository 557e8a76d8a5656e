"""Networks: the papers' layer lists, parameter counts, activations, freezing (no Ray, CPU, fast)."""

import pytest
import torch
from torch import nn

from models.networks import build, count_parameters, paper_pmd_count


def test_pmd_cnn_parameter_count_matches_paper_within_3_percent():
    m = build("pmd-cnn", input_shape=(128, 256))
    n = count_parameters(m)
    assert n == 38_657  # conv weights + conv biases + batch norm + FC(1024 -> 1)
    assert abs(n - 37_857) / 37_857 < 0.03
    assert count_parameters(build("pmd-cnn", input_shape=(128, 256), conv_bias=False)) == 38_497
    parts = paper_pmd_count()
    # the paper's 37,857 = conv weights + batch-norm scales/offsets + an FC of 384 inputs + 1 bias
    assert parts["paper_reconstructed"] == parts["paper"] == 37_857
    assert parts["ours"] == n


def test_pmd_cnn_layers_are_the_papers():
    m = build("pmd-cnn", input_shape=(128, 256), outputs=2)
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert len(convs) == 5 and all(c.kernel_size == (3, 3) and c.out_channels == 32 and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(l, nn.AvgPool2d) for l in m.modules()) == 5
    assert sum(isinstance(l, nn.BatchNorm2d) for l in m.modules()) == 5
    assert [l.p for l in m.modules() if isinstance(l, nn.Dropout)] == [0.2]
    assert m.head.in_features == 32 * 4 * 8
    assert m(torch.randn(3, 128, 256)).shape == (3, 2)
    assert build("pmd-cnn", input_shape=(128, 256), outputs=7)(torch.randn(2, 128, 256)).shape == (2, 7)


def test_1d_networks():
    cnn = build("cnn1d", input_shape=(256,))
    convs = [l for l in cnn.modules() if isinstance(l, nn.Conv1d)]
    assert len(convs) == 5 and all(c.kernel_size == (3,) for c in convs)
    assert [p.kernel_size for p in cnn.modules() if isinstance(p, nn.AvgPool1d)] == [(2,)] * 5
    assert cnn(torch.randn(4, 256)).shape == (4, 1)
    mlp = build("mlp1d", input_shape=(256,))
    lin = [l for l in mlp.modules() if isinstance(l, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(256, 512), (512, 512), (512, 512), (512, 1)]
    assert sum(isinstance(l, nn.BatchNorm1d) for l in mlp.modules()) == 3
    assert mlp(torch.randn(4, 256)).shape == (4, 1)


def test_resnet34_tanh_structure():
    m = build("resnet-tanh", input_shape=(128, 128))
    assert len(m.blocks) == 3 + 4 + 6 + 3
    assert not any(isinstance(l, (nn.ReLU, nn.GELU, nn.SiLU)) for l in m.modules())
    assert any(isinstance(l, nn.Tanh) for l in m.modules())
    assert m.stem[0].kernel_size == (7, 7) and m.stem[0].stride == (2, 2) and m.stem[0].out_channels == 64
    firsts = [m.blocks[i] for i in (0, 3, 7, 13)]
    assert all(b.conv1.stride == (2, 2) and isinstance(b.shortcut[0], nn.Conv2d) and b.shortcut[0].kernel_size == (1, 1)
               for b in firsts)
    assert m.head.in_features == 512 and m.head.out_features == 5
    assert 21.0e6 < count_parameters(m) < 21.6e6  # ResNet-34 body on 1 channel with a 5-output head
    # tanh everywhere: the features of a large input stay in (-1, 1)
    feats = m.blocks(m.stem(m.norm(100 * torch.randn(1, 128, 128)).unsqueeze(1)))
    assert feats.abs().max() <= 1.0
    small = build("resnet-tanh", input_shape=(64, 64), stacks=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem=8)
    assert small(torch.randn(2, 64, 64)).shape == (2, 5)


def test_freeze_first_k_blocks_keeps_them_fixed():
    torch.manual_seed(0)
    m = build("pmd-cnn", input_shape=(32, 64))
    m.freeze(3)
    m.train()
    assert [b.training for b in m.features] == [False, False, False, True, True]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        loss = m(torch.randn(8, 32, 64)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m.state_dict()
    for k in before:  # weights and batch-norm statistics of the frozen blocks unchanged
        frozen = k.startswith(("features.0.", "features.1.", "features.2."))
        same = torch.equal(before[k], after[k])
        if frozen:
            assert same, k
    assert not torch.equal(before["features.4.0.weight"], after["features.4.0.weight"])
    with pytest.raises(ValueError, match="feature blocks"):
        m.freeze(6)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown architecture"):
        build("vgg")
    with pytest.raises(ValueError, match="too small"):
        build("pmd-cnn", input_shape=(16, 64))
    with pytest.raises(ValueError, match="pmd-cnn"):
        build("pmd-cnn", filterz=3)
