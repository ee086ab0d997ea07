"""benchmarks/speed_gpu.py (issue 6 target 5) runs its CUDA code path on the CPU as a smoke
run, so the script keeps working on machines without a GPU; CUDA runs are the script's job."""
import re

import pytest
import torch


def test_speed_gpu_smoke_run_on_cpu(load_benchmark, capsys):
    bench = load_benchmark("speed_gpu")
    code = bench.main(["--device", "cpu", "--input", "128x192", "--batch", "2", "--rounds", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "batch 2, 128x192, fp32" in out
    ratios = re.findall(r"ours ([\d.]+) images/s, (?:reference|paper) ([\d.]+) images/s, ratio ([\d.]+)", out)
    assert len(ratios) == 2, out
    for ours, ref, ratio in ratios:
        assert float(ours) > 0 and float(ratio) == pytest.approx(float(ours) / float(ref), rel=0.02)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_speed_gpu_without_cuda_exits_2_with_one_line(load_benchmark, capsys):
    bench = load_benchmark("speed_gpu")
    assert bench.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]


def test_speed_gpu_rejects_a_bad_input_size(load_benchmark, capsys):
    bench = load_benchmark("speed_gpu")
    assert bench.main(["--device", "cpu", "--input", "800by1200"]) == 2
    assert "--input must be HxW" in capsys.readouterr().err
