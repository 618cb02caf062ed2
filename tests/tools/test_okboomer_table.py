"""hashjax.tools.okboomer_table: #okboomer's Table 1 from a run's log, by hand."""

import pytest

from hashjax.tools import okboomer_table as tool

RECORDS = [
    {"step": 5, "loss": 4.0, "bleu1": 0.1}, {"step": 10, "loss": 3.0, "bleu1": 0.3},
    {"step": 10, "val/loss": 2.5, "val/BLEU-1": 0.2},
    {"step": 15, "loss": 2.0, "bleu1": 0.4}, {"step": 20, "loss": 1.0, "bleu1": 0.6},
    {"step": 20, "val/loss": 1.5, "val/BLEU-1": 0.6},
]


def test_intervals_average_the_training_logs_between_evaluations():
  rows = tool.intervals(RECORDS)
  assert [r["step"] for r in rows] == [10, 20]
  assert rows[0]["Loss (train)"] == pytest.approx(3.5) and rows[1]["Loss (train)"] == 1.5
  assert rows[0]["BLEU-1 (train)"] == pytest.approx(0.2)
  assert rows[1]["BLEU-1 (train)"] == pytest.approx(0.5)
  table = tool.summary(rows)
  assert table["Highest"]["Loss (val)"] == 2.5 and table["Lowest"]["Loss (val)"] == 1.5
  assert table["Mean"]["BLEU-1 (val)"] == pytest.approx(0.4)
  text = tool.markdown(table, 2, "w")
  assert "| Highest | 3.50 | 2.50 | 0.50 | 0.60 |" in text
  with pytest.raises(ValueError, match="no evaluation"):
    tool.intervals(RECORDS[:2])
