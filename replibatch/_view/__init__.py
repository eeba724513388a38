"""What a user looks at: comparisons, the browser, media rendering, reports and plot decisions."""
