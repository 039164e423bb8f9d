/* Sub-commands of the `e2e` tool. */
#ifndef E2E_TOOL_H
#define E2E_TOOL_H

int e2e_demo(int argc, char **argv);
int e2e_train_detect(int argc, char **argv);
int e2e_eval_detect(int argc, char **argv);

#endif
