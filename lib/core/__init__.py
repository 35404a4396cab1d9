"""The bottom layer every package may import: devices and processes, progress lines, the configuration error."""
