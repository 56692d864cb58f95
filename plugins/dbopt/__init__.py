"""dbopt: weekly database-optimization plans as self-verifying Airflow runs.

The core (plan model, targets, advisor, benchmark, metrics, history, report) imports no Airflow;
``dbopt.airflow`` holds the operators, sensors, hooks and triggers built on it.
"""

__version__ = "0.1.0"
