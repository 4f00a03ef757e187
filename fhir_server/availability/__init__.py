"""The availability cache: the SAS slot search answered from per-process agendas."""
