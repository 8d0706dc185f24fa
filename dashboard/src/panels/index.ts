// Every panel of the app page; a new feature adds one import here.
import "./current";
import "./history";
import "./rollout";
import "./health";
import "./capacitor";
