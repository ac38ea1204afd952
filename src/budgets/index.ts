/** Budgets and spend alerts (see README "Budgets and spend alerts"). */
export { setBudget, listBudgets, removeBudget, type Budget, type BudgetInput, type BudgetPeriod, type BudgetScope } from "./define";
export { budgetStatus, type BudgetSelector, type BudgetStatus, type BudgetStatusOptions, type Spending } from "./status";
export { BUDGET_ALERT_CHANNEL, ALERT_CLAIM_MS, type BudgetAlert } from "./alerts";
export { checkBudgets } from "./guard";
export { budgetChecksSettled } from "./thresholdChecks";
export { BUDGET_CACHE_MS, type BudgetAlertCallback, type BudgetErrorCallback, type BudgetFailure } from "./registry";
