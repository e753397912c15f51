"""A family's job script refuses other families' teachers before anything starts."""

from jobs.distill import main


def test_the_flux_job_refuses_an_sd3_teacher(capsys):
    assert main(["--set", "model.name=sd35-large"], families=("flux",)) == 2
    assert "'sd35-large' is not a flux teacher" in capsys.readouterr().err


def test_an_unknown_teacher_is_a_config_error(capsys):
    assert main(["--set", "model.name=flux-dve"], families=("flux",)) == 2
    assert "unknown teacher 'flux-dve'" in capsys.readouterr().err
