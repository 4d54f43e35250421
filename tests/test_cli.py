"The `neurocomp` command: subcommands, helpful errors without tracebacks, exit codes."
import subprocess, sys
import pytest
from neurocomp.cli import main


def run(capsys, *argv):
    try: status = main(list(argv))
    except SystemExit as e: status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_console_script_is_installed():
    script = subprocess.run(["neurocomp", "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and "reproduce" in script.stdout and "data" in script.stdout


def test_data_list_shows_every_dataset(capsys):
    from neurocomp.manifest import load_manifest
    status, out, _ = run(capsys, "data", "list")
    assert status == 0 and all(name in out for name in load_manifest())


def test_data_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCOMP_DATA", str(tmp_path / "cache"))
    for argv, message in [(("data", "verify", "nope"), "unknown dataset 'nope'"),
                          (("data", "verify", "kindalova2021"), "is not in the cache"),
                          (("data", "fetch", "ukb_brueggeman2020"), "UK Biobank"),
                          (("data", "import", "kindalova2021", "--from", str(tmp_path)), "refusing to import")]:
        status, _, err = run(capsys, *argv)
        assert status == 2 and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "cache" / "kindalova2021").exists()
    status, _, err = run(capsys, "data", "import", "kindalova2021")
    assert status == 2 and "--from" in err


def test_data_verify_cached(capsys, kindalova2021):
    status, out, _ = run(capsys, "data", "verify", "kindalova2021")
    assert status == 0 and "1013/1013 files verified" in out


def test_reproduce_list_and_errors(capsys):
    status, out, _ = run(capsys, "reproduce", "--list")
    assert status == 0 and "neurocomp_templates_overview" in out
    status, out, _ = run(capsys, "reproduce", "--list", "--only", "neurocomp")
    assert status == 0 and "neurocomp_templates_overview" in out
    for argv, message in [(("reproduce", "--only", "nope"), "unknown figure or paper"),
                          (("reproduce", "-p", "novalue"), "key=value"),
                          (("reproduce", "--only", "neurocomp", "-p", "undeclared=1"), "not declared")]:
        status, _, err = run(capsys, *argv)
        assert status == 2 and message in err and "Traceback" not in err, (argv, err)
    status, _, err = run(capsys, "reproduce", "--profile", "huge")
    assert status == 2 and "invalid choice" in err


def test_no_command_prints_help(capsys):
    status, out, _ = run(capsys)
    assert status == 2 and "usage: neurocomp" in out


def test_data_without_subcommand_prints_usage(capsys):
    status, out, err = run(capsys, "data")
    assert status == 2 and "usage: neurocomp data" in err and "required" in err and "Traceback" not in err and "AttributeError" not in err


def test_unknown_options_are_refused_except_for_lab(capsys):
    status, _, err = run(capsys, "data", "list", "--bogus")
    assert status == 2 and "unrecognized arguments: --bogus" in err
    from neurocomp.cli import lab_command
    command = lab_command(["--port", "8890", "--no-browser"])
    assert command[-3:] == ["--port", "8890", "--no-browser"] and any(c.startswith("--ServerApp.root_dir=") for c in command)
