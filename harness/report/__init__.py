"""The presentation: the run report (markdown, HTML, plots), Prefect artifacts, compare,
history, the bench table and the progress display. Reads run folders through
`harness.measure`; never runs anything.
"""
