import pytest
import torch
from hypothesis import given, settings, strategies as st

from annorm_cli.errors import AnnormError
from annorm_cli.nn import AttentiveNorm2d, SelfAttention2d, orthogonality_penalty, recording_layouts


def _pair(channels, n_entities=16, affine=False, gamma=0.7):
    fast = AttentiveNorm2d(channels, n_entities=n_entities, affine=affine, impl="fast").double()
    ref = AttentiveNorm2d(channels, n_entities=n_entities, affine=affine, impl="reference").double()
    with torch.no_grad():
        fast.gamma.fill_(gamma)
        if affine:
            fast.entity_weight.uniform_(0.5, 1.5)
            fast.entity_bias.normal_()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (3, 5, 7, 5), (1, 3, 7, 5), (3, 16, 8, 8), (2, 1, 4, 6)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [False, True])
def test_fast_matches_reference_in_float64(shape, training, affine):
    fast, ref = _pair(shape[1], affine=affine)
    fast.train(training)
    ref.train(training)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    positions = torch.randint(0, shape[2] * shape[3], (16,))
    y_fast, y_ref = fast(x, positions), ref(x, positions)
    assert _rel(y_fast, y_ref) < 1e-9
    assert _rel(y_fast - x, y_ref - x) < 1e-9          # the AN branch itself, not only x + ...
    weights = torch.randn_like(y_ref)
    g_fast, = torch.autograd.grad((y_fast * weights).sum(), x)
    g_ref, = torch.autograd.grad((y_ref * weights).sum(), x)
    assert _rel(g_fast, g_ref) < 1e-9


def test_sampled_positions_are_shared_through_the_global_rng():
    fast, ref = _pair(8)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    torch.manual_seed(3)
    y_fast = fast(x)
    torch.manual_seed(3)
    assert _rel(y_fast, ref(x)) < 1e-9


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_gradcheck(impl):
    """Input gradients and those of every parameter, the affine ones (hand-written backward in
    the fast path) included, in training mode (self-sampling on) against finite differences."""
    torch.manual_seed(0)
    layer = AttentiveNorm2d(4, n_entities=3, impl=impl, affine=True).double().train()
    with torch.no_grad():
        layer.gamma.fill_(0.5)
        layer.entity_weight.normal_(1.0, 0.3)           # away from the init (ones, zeros): generic gradients
        layer.entity_bias.normal_(0.0, 0.3)
    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    positions = torch.tensor([0, 3, 5])
    assert torch.autograd.gradcheck(lambda t: layer(t, positions), (x,))
    names = [name for name, _ in layer.named_parameters()]
    assert {"entity_weight", "entity_bias", "key.weight", "query.bias", "value.bias"} <= set(names)

    def run(*values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (x.detach(), positions))
    assert torch.autograd.gradcheck(run, tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters()))


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_the_self_sampling_term_is_alpha_times_query_key_affinity_at_the_sampled_positions(impl):
    """The layout logits against an independent, loop-by-loop computation of
    L_ip = sum_c W_ci x_cp + alpha_i <q_p, k_{s_i}>, q = query(x), k = key(x), s_i = positions[i]."""
    torch.manual_seed(1)
    layer = AttentiveNorm2d(8, n_entities=3, impl=impl).double().train()
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([0.2, 0.7, 1.5]))  # 1.5 is clamped to 1
    layer.record_layout = True
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    positions = torch.tensor([5, 0, 11])
    layer(x, positions)
    q = layer.query(x).detach().flatten(2)                # [B, c, P]
    k = layer.key(x).detach().flatten(2)
    flat = x.flatten(2)
    expected = torch.zeros(2, 3, 12, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for p in range(12):
                alpha = min(1.0, float(layer.alpha[i].detach()))
                expected[b, i, p] = (layer.entity_filters[:, i].detach() * flat[b, :, p]).sum() + \
                    alpha * (q[b, :, p] * k[b, :, int(positions[i])]).sum()
    assert torch.allclose(layer.last_logits.flatten(2), expected, atol=1e-10)
    layout = torch.softmax(expected / layer.temperature, dim=1)
    assert torch.allclose(layer.last_layout.flatten(2), layout, atol=1e-12)
    layer.eval()
    layer(x)                                              # eval: no self-sampling term
    plain = torch.einsum("ci,bcp->bip", layer.entity_filters, flat)
    assert torch.allclose(layer.last_logits.flatten(2), plain, atol=1e-10)


def test_identity_at_init_and_not_after():
    layer = AttentiveNorm2d(8)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(layer(x), x)
    layer.eval()
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.gamma.fill_(0.3)
    assert (layer(x) - x).abs().max() > 1e-3


def test_eval_is_deterministic_and_batch_independent():
    layer = AttentiveNorm2d(8).eval()
    with torch.no_grad():
        layer.gamma.fill_(1.0)
    x = torch.randn(4, 8, 6, 7)
    whole = layer(x)
    assert torch.equal(whole, layer(x))
    for i in range(4):
        torch.testing.assert_close(layer(x[i:i + 1]), whole[i:i + 1], rtol=1e-5, atol=1e-5)


def test_regions_are_normalized_when_layout_is_hard():
    """With one entity taking all the mass, Xhat is the instance norm of v(x)."""
    layer = AttentiveNorm2d(6, n_entities=4).double().eval()
    with torch.no_grad():
        layer.gamma.fill_(1.0)
        layer.entity_filters.zero_()
        layer.entity_filters[:, 0] = 1e4        # logits dominated by entity 0 ...
    x = torch.rand(2, 6, 5, 5, dtype=torch.float64) + 1.0    # ... for positive inputs
    v = layer.value(x)
    mass = 25 + 1e-5                                       # sum of S over positions + eps
    mean = v.sum((2, 3), keepdim=True) / mass
    var = (v * v).sum((2, 3), keepdim=True) / mass - mean ** 2
    expected = (v - mean) / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(layer(x) - x, expected, rtol=1e-6, atol=1e-6)


def test_orthogonality_penalty_matches_hand_computation():
    layer = AttentiveNorm2d(2, n_entities=2)
    with torch.no_grad():
        layer.entity_filters.copy_(torch.tensor([[3.0, 1.0], [4.0, 1.0]]))   # columns (3,4), (1,1)
    cos = (3 + 4) / (5 * 2 ** 0.5)
    assert layer.orthogonality_penalty().item() == pytest.approx(2 * cos ** 2, rel=1e-6)
    model = torch.nn.Sequential(layer, AttentiveNorm2d(2, n_entities=2))
    assert orthogonality_penalty(model).item() == pytest.approx(
        2 * cos ** 2 + model[1].orthogonality_penalty().item(), rel=1e-6)


def test_layouts_sum_to_one_and_recording_leaves_output_unchanged():
    net = torch.nn.Sequential(AttentiveNorm2d(8, n_entities=5), AttentiveNorm2d(8, n_entities=3)).eval()
    for layer in net:
        layer.gamma.data.fill_(0.5)
    x = torch.randn(2, 8, 7, 5)
    plain = net(x)
    with recording_layouts(net) as layers:
        recorded = net(x)
    assert torch.equal(plain, recorded)
    assert list(layers) == ["0", "1"]
    for layer, n in zip(layers.values(), (5, 3)):
        assert layer.last_layout.shape == (2, n, 7, 5) and layer.last_logits.shape == (2, n, 7, 5)
        torch.testing.assert_close(layer.last_layout.sum(1), torch.ones(2, 7, 5))
    assert not net[0].record_layout


@pytest.mark.parametrize("bad", [(2, 7, 4, 4), (8, 4, 4), (1, 8, 4, 4, 1)])
def test_wrong_shape_names_the_expected_one(bad):
    with pytest.raises(AnnormError, match=r"\[B, 8, H, W\]"):
        AttentiveNorm2d(8)(torch.randn(bad))
    with pytest.raises(AnnormError, match=r"\[B, 8, H, W\]"):
        SelfAttention2d(8)(torch.randn(bad))


@settings(max_examples=25, deadline=None)
@given(scale_exp=st.floats(-4, 4), constant=st.booleans(), training=st.booleans(),
       dtype=st.sampled_from([None, torch.bfloat16, torch.float16]))
def test_finite_for_extreme_inputs(scale_exp, constant, training, dtype):
    layer = AttentiveNorm2d(8, n_entities=4).train(training)
    with torch.no_grad():
        layer.gamma.fill_(1.0)
    x = torch.full((2, 8, 5, 5), 0.7) if constant else torch.randn(2, 8, 5, 5)
    x = (x * 10 ** scale_exp).requires_grad_(True)
    if dtype is None:
        y = layer(x)
    else:
        with torch.autocast("cpu", dtype=dtype):
            y = layer(x)
    y.float().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_single_entity_taking_all_mass_is_finite():
    layer = AttentiveNorm2d(8, n_entities=4)
    with torch.no_grad():
        layer.gamma.fill_(1.0)
        layer.entity_filters.zero_()
        layer.entity_filters[:, 2] = 1e6
    x = torch.rand(2, 8, 5, 5, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_self_attention_identity_at_init_and_matches_plain_softmax():
    sa = SelfAttention2d(16).double()
    x = torch.randn(2, 16, 4, 3, dtype=torch.float64)
    assert torch.equal(sa(x), x)
    sa.gamma.data.fill_(0.5)
    q, k, v = (m(x).flatten(2) for m in (sa.query, sa.key, sa.value))
    attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)                 # [B, P, P]
    expected = x + 0.5 * (v @ attn.transpose(1, 2)).view_as(x)
    torch.testing.assert_close(sa(x), expected)
