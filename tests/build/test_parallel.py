import math

import pytest

from dpedkit.errors import ConfigError
from dpedkit.parallel import run_parallel


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_in_input_order_and_callbacks_in_this_process(n_jobs):
    items = [7, 3, 12, 1, 9, 4]
    seen = []
    out = run_parallel(math.factorial, items, n_jobs=n_jobs, on_result=lambda item, res: seen.append((item, res)))
    assert out == [math.factorial(i) for i in items]
    assert sorted(seen) == sorted(zip(items, out, strict=True))


def test_bad_options():
    with pytest.raises(ConfigError, match="backend must be one of"):
        run_parallel(abs, [1], backend="spark")
    with pytest.raises(ConfigError, match="jobs must be"):
        run_parallel(abs, [1], n_jobs=0)


def test_ray_missing_is_a_clear_error():
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install"):
            run_parallel(abs, [1, 2], n_jobs=2, backend="ray")
    else:
        pytest.skip("ray is installed")
