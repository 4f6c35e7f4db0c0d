"""The PyTorch peer computes the JAX model, and the trainer contender runs the loop users run."""

import jax
import numpy as np
import optax
import pytest

from benchmarks import contenders_jax
from benchmarks import model_config
from benchmarks import plan
from benchmarks import trainer_bench
from danhar_jax import models
from danhar_jax import summary
from tests.test_models import authors_config, with_random


DATASETS = ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly")


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("variant", ("cnn", "resnet", "danhar"))
def test_torch_peer_has_the_jax_parameter_count(dataset, variant):
  pytest.importorskip("torch")
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset, variant)
  expected = summary.count_params(jax.eval_shape(lambda: models.init_variables(
      models.create_model(config), config.input_shape))["params"])
  assert torch_reference.count_params(torch_reference.DanHAR(config)) == expected
  torch_reference.build(config)  # asserts the same internally


@pytest.mark.parametrize("dataset", ("wisdm", "opportunity"))
def test_torch_peer_trains_and_evaluates(dataset):
  torch = pytest.importorskip("torch")
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset)
  model = torch_reference.build(config)
  train_step, eval_step = torch_reference.make_steps(model, config, batch_size=2)
  before = [p.detach().clone() for p in model.parameters()]
  loss = train_step()
  assert torch.isfinite(loss)
  assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert eval_step().shape == (2, config.num_classes)


@pytest.mark.slow
@pytest.mark.parametrize("tuned", (False, True), ids=("authors", "tuned"))
@pytest.mark.parametrize("dataset", DATASETS)
def test_torch_peer_computes_the_jax_model(dataset, tuned):
  """With the JAX weights loaded, the peer's training pass (logits, running statistics,
  gradients) and its evaluation equal the JAX model's: the two time the same function. The
  tuned peer (channels_last) must compute it too."""
  torch = pytest.importorskip("torch")
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset)
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  # Nonzero biases and running means, so that every one of them must land in its place.
  variables = with_random(with_random(variables, "bias", 0.3), "mean", 0.3, seed=3)
  x = np.asarray(jax.random.normal(jax.random.key(1), (4, *config.input_shape)))
  labels = np.arange(4) % config.num_classes

  def loss(params):
    logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                  mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (logits,
                                                                                   updates)

  (_, (logits, updates)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      variables["params"])
  peer = torch_reference.load_jax_variables(torch_reference.DanHAR(config), variables).train()
  if tuned:
    torch_reference.tune(peer, "cpu", channels_last=True)
  peer_logits = peer(torch.tensor(x))
  torch.nn.functional.cross_entropy(peer_logits, torch.as_tensor(labels)).backward()
  np.testing.assert_allclose(logits, peer_logits.detach().numpy(), rtol=1e-4, atol=1e-4)

  as_peer = lambda tree: torch_reference.load_jax_variables(torch_reference.DanHAR(config),
                                                            tree).state_dict()
  stats = as_peer({**variables, **updates})
  for name, value in peer.state_dict().items():
    if "running" in name:
      np.testing.assert_allclose(value.numpy(), stats[name].numpy(), rtol=1e-5, atol=1e-6)
  grads = as_peer({**variables, "params": grads})
  got = np.concatenate([p.grad.numpy().ravel() for _, p in peer.named_parameters()])
  want = np.concatenate([grads[n].numpy().ravel() for n, _ in peer.named_parameters()])
  # At batch 4 these gradients are ill-conditioned (ReLU flips, BatchNorm over few samples): a
  # 1e-6 relative perturbation of the input moves JAX's own by 1.2-1.6e-3, as far as the peer's
  # differ from it (1.1-1.8e-3, with lax.conv too). A misplaced weight moves them by O(1).
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2

  peer.eval()
  evaluated = model.apply({**variables, **updates}, x)
  np.testing.assert_allclose(evaluated, peer(torch.tensor(x)).detach().numpy(),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_trainer_contender_runs_the_weakly_loop_with_its_localisation_evaluator():
  """The weakly config scores localisation at every evaluation: the synthetic test split
  carries segments inside its windows, so the trainer contender times that loop as users run
  it, beside its block."""
  setting = plan.Setting("weakly", "trainer", "f32", 4)
  config = model_config.config_for(setting, widths=(16, 32, 48))
  _, test = contenders_jax.splits(config, 8)
  start, end = test["segment_start"], test["segment_end"]
  assert (0 <= start).all() and (start < end).all() and (end <= config.input_shape[0]).all()
  fields = trainer_bench.trainer(setting, config, split_windows=16, epoch_s=0.01, epochs=2)
  assert fields["windows_per_s"] > 0 and fields["extra"]["loop_efficiency"] > 0
  assert fields["repeats"] == 2 and fields["extra"]["steps_per_epoch"] >= 1
  host = trainer_bench.host_us_per_step(config, 1024, batch=256, epochs=2)
  assert host["steps_per_epoch"] == 4 and host["host_us_per_step"] > 0
