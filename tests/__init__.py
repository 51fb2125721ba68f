"""The test suite, a package so that test modules in different folders may share a name (tests.gym.test_env)."""
