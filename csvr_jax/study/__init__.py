"""The evidence study (`--mode=study`, configs/study.py): what each CSVR branch adds, with confidence intervals.

  datasets.py  the SynthActions variants (scene / motion), test and validation draws
  jobs.py      the methods, one job = (dataset, seed, method): pretraining -> export -> per-video outcomes
  run.py       the mode: datasets, jobs in parallel processes (resumable, progress with an ETA), the summary
  stats.py     the seeds x test videos bootstrap (pure numpy)
  summary.py   results.json, report.md and the plots: intervals, paired comparisons, targets, pretext metrics
"""
