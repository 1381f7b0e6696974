"""Fine-tuning an image classifier on a class-per-sub-folder image folder (accelkit.train.user_image):
a tiny Hugging Face ResNet from a config, and a module:function CNN; saved, reloaded, bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model_folders as mf  # noqa: E402
from accelkit.errors import ConfigError, DataFileError  # noqa: E402
from accelkit.train import TrainConfig, train  # noqa: E402
from accelkit.train.checkpoint import load_weights  # noqa: E402
from accelkit.train.user_model import user_training_task  # noqa: E402


def _fit(task, out: Path, steps: int = 8, lr: float = 1e-2):
    config = TrainConfig(max_steps=steps, micro_batch_size=4, lr=lr, epochs=10, progress=False, output_dir=str(out))
    return train(task.model, task.dataset, task.loss_fn, config)


def test_a_hugging_face_image_classifier_learns_dark_from_light_and_reloads(tmp_path):
    folder, images = mf.cnn_folder(tmp_path), mf.image_folder(tmp_path)
    task = user_training_task(folder, images)
    assert task.task == "image-classification" and task.split_report["n_calib"] == 12
    before = task.evaluate(task.model)
    _fit(task, tmp_path / "run")
    after = task.evaluate(task.model)
    assert after["val_loss"] < before["val_loss"]  # held-out images, never trained on
    saved = task.save(tmp_path / "trained")
    assert (saved / "model.safetensors").is_file() and (saved / "preprocessor_config.json").is_file()

    from accelkit.workloads import workload_from_model

    workload = workload_from_model(saved, images)
    assert workload.task == "image-classification"
    pixels = torch.stack([task.heldout[i][0] for i in range(4)])
    task.model.eval()
    with torch.no_grad():
        want = task.model(pixels)
        got = workload.build_model()(pixel_values=pixels).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_a_module_function_cnn_trains_and_saves_its_weights_and_classes(tmp_path):
    images = mf.image_folder(tmp_path)
    task = user_training_task("train_testkit:image_cnn", images)
    assert task.example_batch[0].shape[1:] == (3, 16, 16)  # the function's image_size
    before = task.evaluate(task.model)
    _fit(task, tmp_path / "run", steps=10, lr=3e-2)
    assert task.evaluate(task.model)["val_loss"] < before["val_loss"]
    saved = task.save(tmp_path / "trained")
    assert json.loads((saved / "classes.json").read_text()) == {"classes": ["dark", "light"], "image_size": 16}
    from train_testkit import TinyImageCNN

    fresh = TinyImageCNN(2)
    load_weights(fresh, saved / "model.safetensors")
    assert all(torch.equal(v, task.model.model.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_bad_image_input_is_one_line(tmp_path):
    images = mf.image_folder(tmp_path)
    with pytest.raises(DataFileError, match="has 2 classes \\(dark, light\\) but --model .* gives 3 logits"):
        user_training_task("train_testkit:image_cnn_three_classes", images)
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted(images.rglob("*.png"))[:6]:
        shutil.copy(p, flat / f"{p.parent.name}-{p.name}")
    with pytest.raises(DataFileError, match="sub-folder named after its class"):
        user_training_task(mf.cnn_folder(tmp_path), flat)
    (images / "dark").rename(images / "grey")  # a class the model does not have
    with pytest.raises(DataFileError, match="not one of the model's 2 classes"):
        user_training_task(mf.cnn_folder(tmp_path), images)
    with pytest.raises(ConfigError, match="--label-column"):
        user_training_task(mf.cnn_folder(tmp_path), images, label_column="label")
    with pytest.raises(ConfigError, match="needs text"):
        user_training_task(mf.bert_classifier_folder(tmp_path), images)
