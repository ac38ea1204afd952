process.env.PS_USAGE_TEST_BACKEND = "pglite";
