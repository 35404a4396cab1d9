"""One module per report section: the facts and tables each notebook shows, computed from runs and analyses; the
notebooks keep the prose."""
