"""The snapshot SQL and bulk scoring on Apache Spark, for CRMs beyond one machine (issue 20 item 5)."""
