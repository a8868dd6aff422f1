DROP TABLE confirmation_runs;
