"""The test suite; its folders mirror the packages (DEVELOPING.md). Each folder is a package,
so conftests and helpers have dotted names and any folders run in one pytest call."""
