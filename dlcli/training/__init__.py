"""Training helpers shared by the training commands: functions, not a framework."""
