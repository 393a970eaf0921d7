# common/: code shared by both daemons and their tools.
COMMON_SRCS :=
COMMON_OBJS := $(COMMON_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(COMMON_OBJS)
