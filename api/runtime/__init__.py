"""What runs in the background of a serving process: workers, jobs, DR."""
