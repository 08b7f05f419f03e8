"""siftc selftest: its checks on one small case each, and its table and exit status. (The whole
command runs in .ci/run from the installed wheel: `siftc selftest --quick`.)"""
from siftc.experiments import selftest


def test_member_checks_pass_on_a_small_case_and_name_each_check():
    models = selftest._models("cpu", quick=True)
    factory, inputs, loss = models["gpt_tiny"]
    rows = selftest._eager_checks("gpt_tiny", factory, inputs, "cpu")
    rows += selftest._member_checks("gpt_tiny", factory, inputs, loss, "parallel", "cpu", 4, "aot_eager")
    assert [r.check for r in rows] == ["eager equal (dense)", "eager equal (sparse, all-ones masks)", "compile",
                                       "RigL 4 steps", "torch.compile (aot_eager) 3 steps", "save / load",
                                       "ONNX in onnxruntime"]
    assert all(r.ok for r in rows), [(r.check, r.figure, r.note) for r in rows if not r.ok]


def test_device_twins_run_on_the_cpu():
    rows = selftest._device_checks("cpu", selftest._models("cpu", quick=True))
    by_check = {r.check: r for r in rows}
    assert by_check["bf16 autocast + DST (cpu)"].ok and by_check["DDP (gloo, 1 process)"].ok
    assert by_check["2:4 semi-structured inference"].ok is None      # skipped, and says why
    assert "CUDA only" in by_check["2:4 semi-structured inference"].note


def test_table_and_exit_status_follow_the_rows(capsys, monkeypatch):
    rows = [selftest.Row("compile", "m wide:0.75", True, "1.0 s"), selftest.Row("ONNX", "m", False, note="boom"),
            selftest.Row("2:4", "m", None, note="CUDA only")]
    text = selftest.table(rows, "cpu")
    assert "| ONNX | m | FAIL | boom |" in text and "3 checks: 1 passed, 1 failed, 1 skipped" in text
    monkeypatch.setattr(selftest, "run", lambda device, quick, progress: rows)

    class Args:
        device, quick, no_progress = "cpu", True, True
    assert selftest.main(Args()) == 1
    monkeypatch.setattr(selftest, "run", lambda device, quick, progress: rows[:1])
    assert selftest.main(Args()) == 0
