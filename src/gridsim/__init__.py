"""gridsim: the launcher (`gridsim up`) and the embedded broker and database."""
