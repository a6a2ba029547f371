"""A transfer-learning study of Xception on Stanford Cars, on Ray."""
