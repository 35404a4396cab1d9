"""The command line (`python -m lib`): train, list, and one-line errors with exit status 2."""
import pytest

from lib import experiments
from lib.__main__ import main


def test_cli_unknown_experiment_exits_2_with_the_list(capsys):
    assert main(["train", "nope", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown experiment 'nope'") and "simplenet" in err


def test_cli_train_and_list(tmp_path, capsys):
    assert main(["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--results-dir", str(tmp_path)]) == 0
    assert "val Acc@1" in capsys.readouterr().out
    run = experiments.Run(experiments.run_dir("simplenet", "smoke", {"epochs": 1}, results_dir=tmp_path))
    assert run.config["channels_last"] is True  # the registry's layout for a CNN
    assert main(["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--no-channels-last",
                 "--results-dir", str(tmp_path)]) == 0
    plain = experiments.run_dir("simplenet", "smoke", {"epochs": 1, "channels_last": False}, results_dir=tmp_path)
    assert experiments.Run(plain).config["channels_last"] is False and plain != run.dir
    assert main(["list"]) == 0
    assert "simplenet_custom" in capsys.readouterr().out


# ----------------------------------------------------------------------------- settings checked before any work

@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "error: simplenet: epochs must be an integer >= 1, got -1"),
    (["--batch-size", "0"], "error: simplenet: batch_size must be an integer >= 1, got 0"),
    (["--batch-size", "97"], "error: simplenet: batch_size must be from 1 to the number of training images (96)"),
    (["--lr", "nan"], "error: simplenet: lr must be a finite number > 0, got nan"),
    (["--lr", "0"], "error: simplenet: lr must be a finite number > 0"),
    (["--weight-decay=-1e-4"], "error: simplenet: weight_decay must be a finite number >= 0"),
    (["--image-size", "16"], "error: simplenet: image_size must be an integer >= 32"),
    (["--epochs", "1"], "error: simplenet: warmup_epochs must be a number from 0 to epochs (1), got 5"),
    (["--amp", "fp8"], "error: simplenet: amp must be one of auto, bf16, off"),
    (["--profile", "nosuch"], "error: unknown profile 'nosuch'; valid profiles: cpu-full, full, sample, smoke"),
    (["--epochs", "two"], "error: argument --epochs: invalid int value: 'two'"),
])
def test_cli_bad_setting_is_one_line_exit_2_nothing_written(tmp_path, capsys, flags, message):
    profile = [] if "--profile" in flags else ["--profile", "full" if "--epochs" in flags and "1" in flags else "smoke"]
    try:
        code = main(["train", "simplenet", *profile, *flags, "--results-dir", str(tmp_path / "results")])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()


def test_cli_recipe_search_without_the_data_set_is_one_line_exit_2(tmp_path, capsys):
    assert main(["recipe-search", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nowhere" in err
