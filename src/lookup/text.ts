// temporary: callers move to ../config/urls
export { textProblem } from '../config/urls';
