"""Results records (JSON), the HTML report and the terminal table."""

from accelkit.report.results import SCHEMA, Results, VariantResult, load_results, save_results

__all__ = ["SCHEMA", "Results", "VariantResult", "load_results", "save_results"]
