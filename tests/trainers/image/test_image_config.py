"""Image-run configs: bundled TOML files load into dataclasses; overrides are typed and checked."""
import pytest

from trainers.image.config import (ConfigError, apply_overrides, available_configs, from_dict,
                                   load_config, to_toml)
import tomllib

EXPECTED = {"ddpm_cifar10", "ddpm_celeba", "ddpm_mnist", "ddpm_digits",
            "ncsn_cifar10", "ncsn_celeba", "ncsn_mnist", "ncsn_digits"}


def test_all_bundled_configs_load_and_validate():
    assert EXPECTED <= set(available_configs())
    for name in EXPECTED:
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.method == name.split("_")[0]
        assert cfg.data.dataset == name.split("_")[1]


def test_paper_hyperparameters_in_ddpm_cifar10():
    cfg = load_config("ddpm_cifar10")
    t = cfg.train
    assert (t.lr, t.warmup, t.grad_clip, t.ema_decay, t.batch_size) == (2e-4, 5000, 1.0, 0.9999, 128)
    assert (cfg.ddpm.T, cfg.ddpm.beta_start, cfg.ddpm.beta_end) == (1000, 1e-4, 0.02)
    assert cfg.data.random_flip and cfg.data_range == (-1.0, 1.0)
    n = load_config("ncsn_cifar10")
    assert (n.ncsn.sigma_max, n.ncsn.sigma_min, n.ncsn.n_levels) == (1.0, 0.01, 10)
    assert (n.ncsn.steps_per_level, n.ncsn.eps) == (100, 4e-5)   # the reference code's effective step
    assert n.data_range == (0.0, 1.0)


def test_overrides_are_typed_by_the_field():
    cfg = load_config("ddpm_digits", ["train.lr=1e-3", "n_steps=7", "model.ch_mult=1,2,2",
                                      "model.attn_resolutions=[]", "random_flip=true",
                                      "ddpm.beta_schedule=cosine"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.n_steps == 7 and isinstance(cfg.train.n_steps, int)
    assert cfg.model.ch_mult == [1, 2, 2] and cfg.model.attn_resolutions == []
    assert cfg.data.random_flip is True
    assert cfg.ddpm.beta_schedule == "cosine"


@pytest.mark.parametrize("override, words", [
    ("train.lr=abc", ["train.lr", "number"]),
    ("train.n_steps=1.5", ["train.n_steps", "integer"]),
    ("nonsense=1", ["nonsense", "no config field"]),
    ("train.nope=1", ["[train]", "nope"]),
    ("bogus.lr=1", ["bogus", "section"]),
    ("batch_size=4", ["ambiguous", "train.batch_size", "sample.batch_size"]),
    ("noequals", ["key=value"]),
    ("train.precision=fp8", ["precision"]),
    ("model.ch_mult=1,2,2,2,2", ["image_size", "divisible"]),
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("ddpm_digits", [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_keys_in_toml_are_errors(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('method = "ddpm"\n[train]\nlearning_rate = 1e-3\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(p)
    p.write_text('method = "ddpm"\n[train\n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown config"):
        load_config("no_such_config")


def test_toml_round_trip():
    cfg = load_config("ncsn_celeba", ["train.lr=3e-4"])
    back = from_dict(tomllib.loads(to_toml(cfg)))
    assert back == cfg
    assert apply_overrides(cfg, []) == cfg
