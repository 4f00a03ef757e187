"""The query pipeline: parse a query string, plan its SQL, run it, page it, include."""
