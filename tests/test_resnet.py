"""Homogeneous residual networks A(B, n_blocks, n_stacks): sizes, shapes, the stack limit."""

import pytest
import torch

from dal_runner.arch import Network, n_parameters
from dal_runner.arch.resnet import ResNet, body, embed_dim, max_stacks, n_params
from dal_runner.data import Normalize


def test_resnet18_cifar_variant_has_11173962_parameters():
    # A(basic, 2, 4) = ResNet-18, CIFAR variant (3x3 stem, no max-pool), 10 classes
    assert n_parameters(ResNet("basic", 2, 4, 3, 10)) == 11_173_962


def test_n_params_matches_the_built_model_without_allocating():
    assert n_params("basic", 2, 4, 3, 10) == 11_173_962
    assert n_params("bottleneck", 1, 2, 1, 100, stem="paper") == n_parameters(ResNet("bottleneck", 1, 2, 1, 100, "paper"))


def test_smallest_basic_net_parameter_count_by_hand():
    # A(basic, 1, 1) on 1 channel, 10 classes: stem 9*64 + BN 128; one basic block
    # 2 * (9*64*64 + 128) with no projection; head 64*10 + 10
    expected = (9 * 64 + 128) + 2 * (9 * 64 * 64 + 128) + (64 * 10 + 10)
    assert n_parameters(ResNet("basic", 1, 1, 1, 10)) == expected == 75_338


def test_bottleneck_output_width_is_four_times_the_stack_width():
    assert embed_dim("basic", 4) == 512
    assert embed_dim("bottleneck", 1) == 256
    assert embed_dim("bottleneck", 3) == 1024
    assert ResNet("bottleneck", 1, 3, 3, 10).embed_dim == 1024


@pytest.mark.parametrize("block,channels,size,n_classes,width", [
    ("basic", 1, 8, 10, 128), ("basic", 1, 28, 100, 128), ("basic", 3, 32, 10, 128),
    ("bottleneck", 1, 8, 100, 512), ("bottleneck", 1, 28, 10, 512), ("bottleneck", 3, 32, 100, 512),
])
def test_forward_gives_one_logit_per_class_and_embed_gives_the_last_stack_width(block, channels, size, n_classes,
                                                                               width):
    model = ResNet(block, 1, 2, channels, n_classes).eval()
    x = torch.randn(2, channels, size, size)
    assert model(x).shape == (2, n_classes)
    assert model.embed(x).shape == (2, width)  # 64 * 2 for basic, 4 times that for bottleneck


def test_paper_stem_halves_the_resolution_with_a_max_pool_and_still_classifies():
    model = ResNet("basic", 1, 2, 3, 10, stem="paper").eval()
    stem = model.body[0]
    assert isinstance(stem[-1], torch.nn.MaxPool2d)
    assert stem(torch.randn(1, 3, 32, 32)).shape == (1, 64, 16, 16)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("which", ["ResNet", "Network"])
def test_dropout_sits_between_the_embedding_and_the_head(which):
    """ResNet (standalone) and Network (what dal-run builds, any body)."""
    if which == "ResNet":
        model = ResNet("basic", 1, 1, 3, 10, dropout=0.5).eval()
    else:
        model = Network(Normalize(1.0, [0.0] * 3, [1.0] * 3, is_image=True),
                        body((3, 8, 8), block="basic", n_blocks=1, n_stacks=1, stem="cifar"), embed_dim("basic", 1),
                        10, 0.5).eval()
    x = torch.randn(4, 3, 8, 8)
    assert torch.allclose(model(x), model.head(model.embed(x)))  # evaluation: no dropout
    # training: the head sees the embedding with each entry dropped (0) or scaled by 1 / (1 - p)
    model.train()
    seen = []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    torch.manual_seed(0)
    model(x)
    h = model.embed(x).detach()  # batch statistics, as in the forward pass: the same values
    dropped = seen[0] == 0
    assert torch.allclose(seen[0][~dropped], 2 * h[~dropped], atol=1e-5)
    assert 0.35 < float(dropped.float().mean()) < 0.65


def test_body_plugs_into_network_like_the_other_registered_bodies():
    resnet_body = body((1, 8, 8), block="basic", n_blocks=1, n_stacks=2, stem="cifar")
    net = Network(Normalize(16.0, [0.5], [0.25], is_image=True), resnet_body, embed_dim("basic", 2), 10, 0.0).eval()
    x = torch.randint(0, 17, (4, 1, 8, 8), dtype=torch.uint8)
    assert net.embed(x).shape == (4, 128)
    assert net(x).shape == (4, 10)


def test_body_refuses_flat_data_and_unknown_values_with_the_key_named():
    with pytest.raises(ValueError, match="image data"):
        body((64,), block="basic", n_blocks=1, n_stacks=1)
    with pytest.raises(ValueError, match="arch.block='wide'"):
        ResNet("wide", 1, 1, 3, 10)
    with pytest.raises(ValueError, match="arch.n_stacks=0"):
        ResNet("basic", 1, 0, 3, 10)
    with pytest.raises(ValueError, match="arch.stem='imagenet'"):
        max_stacks(32, "imagenet")


def test_max_stacks_keeps_a_stack_while_the_map_entering_it_has_at_least_2_pixels():
    # cifar stem: 8 | 8->4 | 4->2 | 2->1            -> 4
    assert max_stacks(8) == 4
    # 28 | 28->14 | 14->7 | 7->4 | 4->2 | 2->1       -> 6
    assert max_stacks(28) == 6
    # 32 | 32->16 | 16->8 | 8->4 | 4->2 | 2->1       -> 6
    assert max_stacks(32) == 6
    # paper stem pools first: 8->4: 4 | 4->2 | 2->1 -> 3; 28->14 -> 5; 32->16 -> 5 (the paper's 12 x 5 space)
    assert [max_stacks(s, "paper") for s in (8, 28, 32)] == [3, 5, 5]
    assert max_stacks(1) == 1
    assert max_stacks((32, 8)) == 4  # the smaller side counts


def test_max_stacks_deep_net_reaches_a_1x1_map_in_its_last_stack():
    model = ResNet("basic", 1, max_stacks(8), 1, 10).eval()
    h = torch.randn(1, 1, 8, 8)
    for layer in list(model.body)[:-1]:  # up to, not including, the pooling
        h = layer(h)
    assert h.shape[-2:] == (1, 1)


def test_inherit_copies_what_fits_and_added_blocks_start_as_identity():
    from dal_runner.arch.resnet import inherit

    torch.manual_seed(0)
    small = ResNet("basic", 1, 2, 3, 10, width=8).eval()
    for m in small.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(4, 3, 16, 16)
    deeper = ResNet("basic", 2, 2, 3, 10, width=8).eval()  # one block more per stack
    assert inherit(deeper, small) == len(small.state_dict())
    assert torch.allclose(deeper(x), small(x), atol=1e-5)  # the function is unchanged
    wider = ResNet("basic", 1, 3, 3, 10, width=8).eval()  # one stack more: a new width, new head
    copied = inherit(wider, small)
    assert 0 < copied < len(small.state_dict())
    assert torch.equal(wider.body[0][0].weight, small.body[0][0].weight)
    assert not torch.allclose(wider(x), small(x))


def test_inherit_copies_nothing_across_block_types():
    # a bottleneck net shares tensor names with a basic one (conv1, bn1, head) but no function
    from dal_runner.arch.resnet import inherit

    torch.manual_seed(0)
    basic = ResNet("basic", 1, 3, 3, 10, width=4)
    bottleneck = ResNet("bottleneck", 1, 1, 3, 10, width=4)
    before = {k: v.clone() for k, v in bottleneck.state_dict().items()}
    assert inherit(bottleneck, basic) == 0 and inherit(basic, bottleneck.state_dict()) == 0
    assert all(torch.equal(v, before[k]) for k, v in bottleneck.state_dict().items())
