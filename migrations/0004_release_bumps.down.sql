DROP TABLE IF EXISTS release_bumps;
