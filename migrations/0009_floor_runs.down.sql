DROP TABLE floor_runs;
